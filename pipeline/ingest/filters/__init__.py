"""Document filters in FineWeb's order. Each is a callable `filter(doc) -> drop reason | None` that also
writes its signals into `doc.signals`, so that a threshold change is a query over the output columns
rather than a re-run.

The order is declared here once (`TEXT_FILTERS`, `DROP_STAGES`); each filter class declares its own
rules (`rules`: signal, recipe key, comparison) and the other keys of its recipe table (`settings`).
Ingest, the report, the tests and the bench all read these declarations.

Every filter class is built by `from_section(section, all_signals=False)`. A kept document always gets
all of a filter's signals. With `all_signals=False` a filter may stop at its first broken rule, so a
dropped document can lack the signals of the later rules (Gopher repetition does: its n-gram signals are
most of its cost); pass `all_signals=True` when dropped documents are kept (`--keep-removed`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Protocol

from tokenmill.pipeline.ingest.document import Document
from tokenmill.pipeline.ingest.filters.c4 import C4Filter
from tokenmill.pipeline.ingest.filters.fineweb_quality import FineWebQualityFilter
from tokenmill.pipeline.ingest.filters.gopher_quality import GopherQualityFilter
from tokenmill.pipeline.ingest.filters.gopher_repetition import GopherRepetitionFilter
from tokenmill.pipeline.ingest.filters.language import LanguageFilter
from tokenmill.pipeline.ingest.filters.rules import Limit, Rule, bind
from tokenmill.pipeline.ingest.filters.url import URLFilter
from tokenmill.pipeline.recipe import Recipe


class Filter(Protocol):
    name: ClassVar[str]  # its recipe table, and its stage in the drop reasons ("stage:reason")
    signal_names: ClassVar[tuple[str, ...]]  # the signal columns it writes
    rules: ClassVar[tuple[Rule, ...]]  # its drop rules whose limits are recipe keys
    settings: ClassVar[tuple[str, ...]]  # the other keys of its recipe table

    @classmethod
    def from_section(cls, section: dict[str, Any], all_signals: bool = False) -> Filter: ...

    def __call__(self, doc: Document) -> str | None: ...


# The filters that run on extracted text, in FineWeb's order. The URL filter runs before extraction.
TEXT_FILTERS: tuple[type[Filter], ...] = (
    LanguageFilter,
    GopherRepetitionFilter,
    GopherQualityFilter,
    C4Filter,
    FineWebQualityFilter,
)
FILTERS: tuple[type[Filter], ...] = (URLFilter, *TEXT_FILTERS)

# The language filter's check of the page's crude visible text before extraction. Its drops are counted
# as "language:precheck_*"; the funnel shows them as a step of their own, under this name.
LANGUAGE_PRECHECK = "language precheck"

# Every stage that drops records, in the order a record meets them, by the stage names of the ingest
# stats: the WARC reader, a record whose processing raised, the URL filter, charset decoding, the
# language precheck, text extraction, then the text filters.
DROP_STAGES: tuple[str, ...] = (
    "read",
    "process",
    URLFilter.name,
    "decode",
    LANGUAGE_PRECHECK,
    "extract",
    *(filter_class.name for filter_class in TEXT_FILTERS),
)


def build_text_filters(recipe: Recipe, all_signals: bool = False) -> list[Filter]:
    """The enabled filters that run on extracted text, in FineWeb's order.
    `all_signals`: every filter computes all its signals even for the documents it drops."""
    filters: list[Filter] = []
    for filter_class in TEXT_FILTERS:
        section = recipe.section(filter_class.name)
        if section.pop("enabled", True):
            filters.append(filter_class.from_section(section, all_signals=all_signals))
    return filters


def signal_columns() -> list[str]:
    """Every signal column any filter can write, in a fixed order (the Parquet schema)."""
    return [name for filter_class in FILTERS for name in filter_class.signal_names]


def recipe_limits(tables: Mapping[str, Mapping[str, Any]]) -> list[Limit]:
    """Every limit a recipe's tables switch on, filter by filter in FineWeb's order; a disabled filter
    has none."""
    limits: list[Limit] = []
    for filter_class in FILTERS:
        table = tables.get(filter_class.name, {})
        if table.get("enabled", True):
            limits += bind(filter_class.rules, filter_class.name, table)
    return limits
