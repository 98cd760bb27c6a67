"""FineWeb's own quality rules (Penedo et al. 2024), as datatrove's FineWebQualityFilter applies them.

They catch what Gopher and C4 let through: pages whose lines mostly do not end like sentences, pages
made of short lines (menus, lists), pages with repeated lines, and lists (many newlines per word).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from tokenmill.pipeline.ingest.document import Document
from tokenmill.pipeline.ingest.filters.rules import Rule, bind
from tokenmill.pipeline.recipe import table_config
from tokenmill.pipeline.text import count_duplicates, terminal_punctuation


@dataclass(frozen=True)
class FineWebQualityConfig:
    line_punct_thr: float
    line_punct_exclude_zero: bool
    short_line_thr: float
    short_line_length: int
    char_duplicates_ratio: float
    new_line_ratio: float


class FineWebQualityFilter:
    name = "fineweb_quality"
    signal_names: tuple[str, ...] = (
        "fineweb_q_line_punct_ratio",
        "fineweb_q_short_line_ratio",
        "fineweb_q_char_dup_ratio",
        "fineweb_q_new_line_ratio",
    )
    rules = (
        Rule("line_punct_ratio", "fineweb_q_line_punct_ratio", "<", "line_punct_thr"),
        Rule("short_line_ratio", "fineweb_q_short_line_ratio", ">", "short_line_thr"),
        Rule("char_dup_ratio", "fineweb_q_char_dup_ratio", ">", "char_duplicates_ratio"),
        Rule("list_ratio", "fineweb_q_new_line_ratio", ">", "new_line_ratio"),
    )
    # line_punct_exclude_zero: a page with no line ending in punctuation passes the punctuation rule.
    settings = ("line_punct_exclude_zero", "short_line_length")

    def __init__(self, config: FineWebQualityConfig):
        self.config = config
        self.limits = bind(self.rules, self.name, asdict(config))
        self.stop_chars = terminal_punctuation()

    @classmethod
    def from_section(cls, section: dict[str, Any], all_signals: bool = False) -> FineWebQualityFilter:
        return cls(table_config(FineWebQualityConfig, section, "fineweb_quality"))

    def signals(self, doc: Document) -> dict[str, float]:
        """The four ratios over the non-blank lines (all zero when there are none)."""
        text = doc.text
        lines = [line for line in text.split("\n") if line.strip() != ""]
        if not lines:
            return dict.fromkeys(self.signal_names, 0.0)
        n_words = len(doc.words)
        return {
            "fineweb_q_line_punct_ratio": sum(line.endswith(self.stop_chars) for line in lines) / len(lines),
            "fineweb_q_short_line_ratio": sum(len(line) <= self.config.short_line_length for line in lines)
            / len(lines),
            "fineweb_q_char_dup_ratio": count_duplicates(lines)[1] / len(text.replace("\n", "")),
            "fineweb_q_new_line_ratio": text.count("\n") / n_words if n_words else 0.0,
        }

    def __call__(self, doc: Document) -> str | None:
        signals = self.signals(doc)
        doc.signals.update(signals)
        if not doc.text.strip():
            return "empty"
        for limit in self.limits:
            value = signals[limit.signal]
            exempt = (
                limit.signal == "fineweb_q_line_punct_ratio"
                and value == 0
                and self.config.line_punct_exclude_zero
            )
            if not exempt and limit.drops(value):
                return limit.reason
        return None
