"""Document filters in FineWeb's order. Each is a callable `filter(doc) -> drop reason | None` that also
writes its signals into `doc.signals`, so that a threshold change is a query over the output columns
rather than a re-run.

Every filter class is built by `from_section(section, all_signals=False)`. A kept document always gets
all of a filter's signals. With `all_signals=False` a filter may stop at its first broken rule, so a
dropped document can lack the signals of the later rules (Gopher repetition does: its n-gram signals are
most of its cost); pass `all_signals=True` when dropped documents are kept (`--keep-removed`).
"""

from __future__ import annotations

from typing import Protocol

from tokenmill.pipeline.ingest.document import Document
from tokenmill.pipeline.recipe import Recipe


class Filter(Protocol):
    name: str
    signal_names: tuple[str, ...]

    def __call__(self, doc: Document) -> str | None: ...


def build_text_filters(recipe: Recipe, all_signals: bool = False) -> list[Filter]:
    """The filters that run on extracted text, in FineWeb's order (the URL filter runs before extraction).
    `all_signals`: every filter computes all its signals even for the documents it drops."""
    from tokenmill.pipeline.ingest.filters.c4 import C4Filter
    from tokenmill.pipeline.ingest.filters.fineweb_quality import FineWebQualityFilter
    from tokenmill.pipeline.ingest.filters.gopher_quality import GopherQualityFilter
    from tokenmill.pipeline.ingest.filters.gopher_repetition import GopherRepetitionFilter
    from tokenmill.pipeline.ingest.filters.language import LanguageFilter

    stages = [
        ("language", LanguageFilter),
        ("gopher_repetition", GopherRepetitionFilter),
        ("gopher_quality", GopherQualityFilter),
        ("c4", C4Filter),
        ("fineweb_quality", FineWebQualityFilter),
    ]
    filters: list[Filter] = []
    for section_name, filter_class in stages:
        section = recipe.section(section_name)
        if section.pop("enabled", True):
            filters.append(filter_class.from_section(section, all_signals=all_signals))
    return filters


def signal_columns() -> list[str]:
    """Every signal column any text filter can write, in a fixed order (the Parquet schema)."""
    from tokenmill.pipeline.ingest.filters.c4 import C4Filter
    from tokenmill.pipeline.ingest.filters.fineweb_quality import FineWebQualityFilter
    from tokenmill.pipeline.ingest.filters.gopher_quality import GopherQualityFilter
    from tokenmill.pipeline.ingest.filters.gopher_repetition import GopherRepetitionFilter

    columns: list[str] = []
    for filter_class in (GopherRepetitionFilter, GopherQualityFilter, C4Filter, FineWebQualityFilter):
        columns.extend(filter_class.signal_names)
    return columns
