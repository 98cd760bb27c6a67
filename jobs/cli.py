"""The `tokenmill` command: one subcommand per stage, each built from the stage's settings declaration.

For every command: parse the options into the stage's settings (a `UserError` for a value that cannot
be right), check what can be checked without Spark (recipe, inputs, output root, tokenizer), start the
Spark session only then, and call the stage function. A Spark command holds its output root's lock
(`pipeline.lock`, ROOT/_LOCK.json) from before Spark starts until it ends, on error too. A `UserError`
anywhere is printed as one line with exit status 2; exit status 3 means the stage finished but left
work undone (failed input units, an accounting mismatch) that a rerun retries; any other exception is
a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from tokenmill.jobs.stages import (
    chat,
    crawls,
    dedup,
    ingest,
    report,
    run,
    sample,
    scrub,
    select,
    sft,
    tokenize,
    train,
    train_classifier,
    train_tokenizer,
)
from tokenmill.jobs.stages.settings import add_options, from_options
from tokenmill.pipeline.errors import UserError
from tokenmill.pipeline.lock import RootLock
from tokenmill.pipeline.storage.uri import redact_text

EXIT_USER_ERROR, EXIT_INCOMPLETE = 2, 3


@dataclass(frozen=True)
class Command:
    """A subcommand: where its options are declared, how its settings are built, checked and run."""

    module: ModuleType  # its docstring is the command's description
    options: tuple[type, ...]  # settings classes whose fields are the options
    run: Callable[..., dict[str, Any]]  # run(spark, settings) when `spark`, else run(settings)
    check: Callable[[Any], Any] | None = None
    spark: bool = True
    build: Callable[[argparse.Namespace], Any] | None = None  # default: the first options class
    skip: frozenset[str] = frozenset()
    python_bound: bool = False  # all its work is in Python tasks (jobs.spark.session.QUICK_JIT)

    def settings(self, namespace: argparse.Namespace) -> Any:
        return self.build(namespace) if self.build else from_options(self.options[0], namespace)


COMMANDS: dict[str, Command] = {
    "run": Command(
        run, run.OPTION_SOURCES, run.run_run, run.check_run, build=run.pipeline_settings, skip=run.CHAINED
    ),
    "ingest": Command(
        ingest, (ingest.IngestSettings,), ingest.run_ingest, ingest.check_ingest, python_bound=True
    ),
    "dedup": Command(dedup, (dedup.DedupSettings,), dedup.run_dedup, dedup.check_dedup),
    "select": Command(select, (select.SelectSettings,), select.run_select, select.check_select),
    "scrub": Command(scrub, (scrub.ScrubSettings,), scrub.run_scrub, scrub.check_scrub),
    "train-tokenizer": Command(
        train_tokenizer,
        (train_tokenizer.TrainTokenizerSettings,),
        train_tokenizer.run_train_tokenizer,
        train_tokenizer.check_train_tokenizer,
    ),
    "train-classifier": Command(
        train_classifier,
        (train_classifier.TrainClassifierSettings,),
        train_classifier.run_train_classifier,
        train_classifier.check_train_classifier,
        spark=False,
    ),
    "tokenize": Command(
        tokenize,
        (tokenize.TokenizeSettings,),
        tokenize.run_tokenize,
        tokenize.check_tokenize,
        python_bound=True,
    ),
    "train": Command(train, (train.TrainSettings,), train.run_train, spark=False),
    "sft": Command(sft, (sft.SftSettings,), sft.run_sft, sft.check_sft, spark=False),
    "chat": Command(chat, (chat.ChatSettings,), chat.run_chat, chat.check_chat, spark=False),
    "sample": Command(sample, (sample.SampleSettings,), sample.run_sample, sample.check_sample, spark=False),
    "report": Command(report, (report.ReportSettings,), report.run_report, spark=False),
    "crawls": Command(crawls, (crawls.CrawlsSettings,), crawls.run_crawls, spark=False),
}


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="tokenmill", description="Common Crawl to training shards on Spark.")
    commands = top.add_subparsers(dest="command", required=True)
    for name, command in COMMANDS.items():
        sub = commands.add_parser(
            name,
            help=command.module.SUMMARY,
            description=command.module.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        add_options(sub, *command.options, skip=command.skip)
    return top


def command_parser(name: str, **kwargs: Any) -> argparse.ArgumentParser:
    """The parser of one command alone (`kwargs` go to ArgumentParser), as `tokenmill NAME` parses."""
    command = COMMANDS[name]
    sub = argparse.ArgumentParser(prog=f"tokenmill {name}", **kwargs)
    add_options(sub, *command.options, skip=command.skip)
    return sub


def incomplete(stats: Any) -> bool:
    """Whether a stage's stats (or a run's, nested) report work left undone."""
    if not isinstance(stats, dict):
        return False
    if stats.get("failed_units") or stats.get("unbalanced_units") or stats.get("balanced") is False:
        return True
    return any(incomplete(value) for value in stats.values())


def execute(name: str, namespace: argparse.Namespace, argv: list[str]) -> int:
    """Check, then for a Spark command hold the output root's lock from before Spark starts to the end."""
    command = COMMANDS[name]
    settings = command.settings(namespace)
    if command.check:
        command.check(settings)
    if not command.spark:
        return EXIT_INCOMPLETE if incomplete(command.run(settings)) else 0
    from tokenmill.jobs.spark.session import build_session

    described = redact_text(" ".join(["tokenmill", *argv]))  # it is stored in ROOT/_LOCK.json
    with RootLock(settings.output, settings.s3, described, force=settings.force):
        spark = build_session(namespace.master, f"tokenmill-{name}", python_bound=command.python_bound)
        return EXIT_INCOMPLETE if incomplete(command.run(spark, settings)) else 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    namespace = parser().parse_args(argv)
    try:
        return execute(namespace.command, namespace, argv)
    except UserError as error:
        print(f"tokenmill {namespace.command}: error: {redact_text(str(error))}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
