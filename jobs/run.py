"""Run: the whole pipeline, ingest -> dedup -> tokenize -> report, each stage resumable.

    tokenmill run INPUT... -o ROOT [--recipe fineweb|FILE] [--encoding gpt2|...] [--master URL]
    tokenmill run --crawl latest|CC-MAIN-YYYY-WW -o ROOT [--index FILE|URL] [--cc-base URL]
    spark-submit jobs/run.py ... (the same, on a cluster)

Each stage runs only what is not complete: ingest skips units with a completion marker, dedup and
tokenize skip when their outputs match the inputs and settings. A rerun after a crash therefore
resumes where the run stopped, and a rerun of a finished run does nothing.

With --crawl, the crawl is looked up in Common Crawl's collinfo.json (--index), its warc.paths.gz
manifest is read against --cc-base, and the crawl gets its own run root, ROOT/crawls/<crawl id>.
Its documents are deduplicated against every crawl processed before under ROOT (dedup --against), so
a schedule that runs `--crawl latest` each month never admits a document of an earlier month again.
"""

from __future__ import annotations

import argparse
import sys
import time

from tokenmill.jobs import cli
from tokenmill.jobs.spark.session import add_cluster_arguments
from tokenmill.pipeline.ingest.crawls import (
    DEFAULT_INDEX,
    CrawlIndexError,
    crawl_root,
    load_index,
    processed,
    resolve,
    warc_manifest,
)
from tokenmill.pipeline.storage import S3Options, join

EXIT_INCOMPLETE = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "inputs", nargs="*", metavar="INPUT", help="as for `tokenmill ingest` (or use --crawl)"
    )
    parser.add_argument(
        "-o", "--output", required=True, metavar="ROOT", help="run root (local path or s3://)"
    )
    parser.add_argument("--crawl", default=None, metavar="latest|CC-MAIN-YYYY-WW", help="process a crawl")
    parser.add_argument("--index", default=DEFAULT_INDEX, metavar="FILE|URL", help="collinfo.json (--crawl)")
    parser.add_argument("--cc-base", default="s3://commoncrawl/", help="where manifest keys are resolved")
    parser.add_argument("--recipe", default="fineweb", help="preset name or TOML file (default: fineweb)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--dump", default="", help="dump name in every document (default: from the paths)")
    parser.add_argument("--limit", type=int, default=None, metavar="N", help="records per input file")
    parser.add_argument("--keep-removed", action="store_true", help="also keep dropped documents")
    parser.add_argument("--preset", default="fineweb", help="MinHash preset (fineweb, nemo, redpajama)")
    parser.add_argument("--encoding", default="gpt2", metavar="NAME|PATH", help="tokenizer (default gpt2)")
    parser.add_argument("--shard-tokens", type=int, default=None, metavar="N", help="tokens per shard")
    parser.add_argument("--val-tokens", type=int, default=None, metavar="N", help="validation tokens")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="shuffle seed (default 0)")
    parser.add_argument("--no-report", action="store_true", help="skip ROOT/report.html")
    add_cluster_arguments(parser)


def _common(args: argparse.Namespace) -> list[str]:
    return [
        *(["--master", args.master] if args.master else []),
        *(["--s3-endpoint", args.s3_endpoint] if args.s3_endpoint else []),
    ]


def stages(args: argparse.Namespace, inputs: list[str], root: str, against: list[str]) -> list[list[str]]:
    """The three commands, as `tokenmill` would be called for each, with this run's settings."""
    ingest = ["ingest", *inputs, "-o", root, "--recipe", args.recipe, "--cc-base", args.cc_base]
    ingest += [f"--set={item}" for item in args.set]
    ingest += ["--dump", args.dump] if args.dump else []
    ingest += ["--limit", str(args.limit)] if args.limit is not None else []
    ingest += ["--keep-removed"] if args.keep_removed else []
    dedup = ["dedup", "-o", root, "--preset", args.preset, *(["--against", *against] if against else [])]
    tokenize = ["tokenize", "-o", root, "--encoding", args.encoding, "--seed", str(args.seed)]
    tokenize += ["--shard-tokens", str(args.shard_tokens)] if args.shard_tokens is not None else []
    tokenize += ["--val-tokens", str(args.val_tokens)] if args.val_tokens is not None else []
    return [command + _common(args) for command in (ingest, dedup, tokenize)]


def run(args: argparse.Namespace) -> int:
    s3 = S3Options(endpoint_url=args.s3_endpoint)
    root, inputs, against, dump = args.output, list(args.inputs), [], args.dump
    if args.crawl:
        if inputs:
            raise SystemExit("run: give INPUT files or --crawl, not both")
        try:
            crawls = load_index(args.index, s3)
            crawl = resolve(crawls, args.crawl)
        except CrawlIndexError as exc:
            raise SystemExit(f"run: {exc}") from None
        root = crawl_root(args.output, crawl)
        if processed(args.output, crawl, s3):
            print(f"run: {crawl.id} is already processed in {root}; nothing to do")
            return 0
        earlier = [other for other in crawls if other != crawl and processed(args.output, other, s3)]
        inputs = [join(args.cc_base, warc_manifest(crawl))]
        against = [crawl_root(args.output, other) for other in earlier]
        dump = dump or crawl.id
        print(f"run: {crawl.id} ({crawl.name}) -> {root}, deduplicated against {len(against)} earlier crawls")
    elif not inputs:
        raise SystemExit("run: give INPUT files (WARCs, directories, manifests) or --crawl")
    args.dump = dump

    started = time.perf_counter()
    incomplete = False
    for command in stages(args, inputs, root, against):
        print(f"run: tokenmill {' '.join(command[:1])} ...", flush=True)
        code = cli.main(command)
        if code == EXIT_INCOMPLETE and command[0] == "ingest":
            incomplete = True  # failed units are reported; the rest goes on, and a rerun retries them
        elif code != 0:
            print(f"run: {command[0]} failed with status {code}; rerun to resume", file=sys.stderr)
            return code
    if not args.no_report:
        from tokenmill.pipeline.report import write_report

        print(f"run: report {write_report(root, s3)}")
    print(f"run: complete in {time.perf_counter() - started:,.1f} s -> {root}")
    return EXIT_INCOMPLETE if incomplete else 0


if __name__ == "__main__":  # spark-submit jobs/run.py ...: the same parser as `tokenmill run`
    from tokenmill.jobs.cli import main

    sys.exit(main(["run", *sys.argv[1:]]))
