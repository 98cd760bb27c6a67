"""The `tokenmill` command: one subcommand per job, running the same code as `spark-submit jobs/<job>.py`."""

from __future__ import annotations

import argparse
import sys
from types import ModuleType


def _jobs() -> dict[str, tuple[ModuleType, str]]:
    from tokenmill.jobs import (
        crawls,
        dedup,
        ingest,
        report,
        run,
        sample,
        scrub,
        tokens,
        train,
        train_tokenizer,
    )

    return {
        "run": (run, "the whole pipeline: ingest -> dedup -> tokenize -> report, each stage resumable"),
        "ingest": (ingest, "WARC/WET files -> FineWeb-filtered documents (Parquet)"),
        "dedup": (dedup, "documents -> exact + MinHash dedup -> PII scrubbing -> final documents"),
        "scrub": (scrub, "PII scrubbing alone, on any id,text Parquet"),
        "train-tokenizer": (
            train_tokenizer,
            "byte-level BPE on the corpus: counted in Spark, merged on the driver",
        ),
        "tokenize": (tokens, "final documents -> shuffled token shards (.bin, .idx, .parquet, manifest)"),
        "train": (train, "token shards -> a GPT (one GPU or many under torchrun), checkpoints, metrics"),
        "sample": (sample, "text from a trained checkpoint: greedy, temperature, top-k, top-p"),
        "report": (report, "ROOT -> ROOT/report.html: funnel, languages, signals, dedup, tokens, loss"),
        "crawls": (crawls, "Common Crawl's crawls (collinfo.json), and which ones a ROOT has processed"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tokenmill", description="Common Crawl to training shards on Spark."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, (module, summary) in _jobs().items():
        command = commands.add_parser(
            name,
            help=summary,
            description=module.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(command)
        command.set_defaults(handler=module.run)
    args = parser.parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
