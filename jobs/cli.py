"""The `tokenmill` command: one subcommand per job, running the same code as `spark-submit jobs/<job>.py`."""

from __future__ import annotations

import argparse
import sys

from jobs import ingest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tokenmill", description="Common Crawl to training shards on Spark."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    ingest_parser = commands.add_parser(
        "ingest",
        help="WARC/WET files -> FineWeb-filtered documents (Parquet)",
        description=ingest.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ingest.add_arguments(ingest_parser)
    ingest_parser.set_defaults(handler=ingest.run)
    args = parser.parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
