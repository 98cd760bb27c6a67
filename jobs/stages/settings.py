"""A stage's settings are declared once, as a frozen dataclass; the command-line options come from it.

    @dataclass(frozen=True, kw_only=True)
    class DedupSettings(SparkSettings):
        preset: str = option("fineweb", "MinHash shingles and bands", choices=("fineweb", ...))

`add_options(parser, DedupSettings)` adds `--preset` (type, default, choices and help from the field),
`from_options(DedupSettings, namespace)` builds the settings back, and `tokenmill run` adds the options
of all its stages to one parser the same way, so no stage option can be missing from `run`. A value that
cannot be right (a negative limit, a bad fraction) is a `UserError` raised by the settings themselves.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from dataclasses import MISSING, dataclass, field
from typing import Any, TypeVar

from tokenmill.pipeline.storage import S3Options

SettingsT = TypeVar("SettingsT")


def option(
    default: Any = MISSING,
    help: str = "",
    *,
    flags: tuple[str, ...] = (),
    metavar: str | None = None,
    choices: tuple[str, ...] | None = None,
    positional: bool = False,
    repeated: bool = False,
) -> Any:
    """A settings field with its command-line form. No default: a required option. `flags` replace the
    default `--field-name` (e.g. ("-o", "--output")); `positional` makes it an argument list; `repeated`
    makes a list option that is given once per value (`--set a=1 --set b=2`)."""
    metadata = {"help": help, "flags": flags, "metavar": metavar, "choices": choices}
    return field(default=default, metadata={**metadata, "positional": positional, "repeated": repeated})


@dataclass(frozen=True, kw_only=True)
class SparkSettings:
    """What every Spark stage takes besides its own settings: where Spark runs and how S3 is reached."""

    master: str | None = option(None, "Spark master URL (default: spark-submit's, else local[*])")
    s3_endpoint: str | None = option(
        None,
        "S3-compatible endpoint (also AWS_ENDPOINT_URL); the public commoncrawl bucket is read unsigned",
        metavar="URL",
    )

    force: bool = option(False, "take the output root's lock even if another run seems to hold it")

    @property
    def s3(self) -> S3Options:
        return S3Options(endpoint_url=self.s3_endpoint)

    def output_settings(self) -> dict[str, Any]:
        """The fields that can change what the stage writes, for its fingerprint: all but where Spark
        runs, how S3 is reached and whether the lock is forced."""
        runtime = {spec.name for spec in dataclasses.fields(SparkSettings)}
        return {key: value for key, value in dataclasses.asdict(self).items() if key not in runtime}


def _value_type(annotation: Any) -> tuple[type, bool, bool]:
    """(element type, optional, is a list) of a field annotation like `int | None` or `tuple[str, ...]`."""
    optional = False
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        members = [member for member in typing.get_args(annotation) if member is not type(None)]
        optional, annotation = True, members[0]
    if typing.get_origin(annotation) is tuple:
        return typing.get_args(annotation)[0], optional, True
    return annotation, optional, False


def add_options(
    parser: argparse.ArgumentParser, *settings_classes: type, skip: frozenset[str] = frozenset()
) -> None:
    """One argparse option per field of the settings classes, each name once, leaving out `skip`."""
    seen = set(skip)
    for settings_class in settings_classes:
        hints = typing.get_type_hints(settings_class)
        for spec in dataclasses.fields(settings_class):
            if spec.name not in seen and "help" in spec.metadata:
                seen.add(spec.name)
                _add_option(parser, spec, hints[spec.name])


def _add_option(parser: argparse.ArgumentParser, spec: dataclasses.Field, annotation: Any) -> None:
    meta = spec.metadata
    value_type, _, is_list = _value_type(annotation)
    required = spec.default is MISSING
    kwargs: dict[str, Any] = {"help": meta["help"]}
    if meta["metavar"]:
        kwargs["metavar"] = meta["metavar"]
    if meta["choices"]:
        kwargs["choices"] = meta["choices"]
    if meta["positional"]:
        parser.add_argument(spec.name, nargs="+" if required else "*", **kwargs)
        return
    flags = meta["flags"] or (f"--{spec.name.replace('_', '-')}",)
    kwargs["dest"] = spec.name
    if value_type is bool:
        parser.add_argument(*flags, action="store_true", **kwargs)
        return
    if required:
        kwargs["required"] = True
    else:
        kwargs["default"] = list(spec.default) if is_list else spec.default
    if is_list and meta["repeated"]:
        kwargs["action"] = "append"
    elif is_list:
        kwargs["nargs"] = "*"
    parser.add_argument(*flags, type=value_type, **kwargs)


def from_options(settings_class: type[SettingsT], namespace: argparse.Namespace, **given: Any) -> SettingsT:
    """The settings from parsed options; `given` sets fields that are not options (run's chaining)."""
    values: dict[str, Any] = {}
    hints = typing.get_type_hints(settings_class)
    for spec in dataclasses.fields(settings_class):
        if spec.name in given:
            values[spec.name] = given[spec.name]
        elif hasattr(namespace, spec.name):
            value = getattr(namespace, spec.name)
            values[spec.name] = (
                tuple(value) if _value_type(hints[spec.name])[2] and value is not None else value
            )
    return settings_class(**values)
