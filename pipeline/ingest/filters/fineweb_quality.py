"""FineWeb's own quality rules (Penedo et al. 2024), as datatrove's FineWebQualityFilter applies them.

They catch what Gopher and C4 let through: pages whose lines mostly do not end like sentences, pages
made of short lines (menus, lists), pages with repeated lines, and lists (many newlines per word).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tokenmill.pipeline.ingest.document import Document
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

    def __init__(self, config: FineWebQualityConfig):
        self.config = config
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
        config = self.config
        punct_ratio = signals["fineweb_q_line_punct_ratio"]
        if punct_ratio < config.line_punct_thr and not (punct_ratio == 0 and config.line_punct_exclude_zero):
            return "line_punct_ratio"
        if signals["fineweb_q_short_line_ratio"] > config.short_line_thr:
            return "short_line_ratio"
        if signals["fineweb_q_char_dup_ratio"] > config.char_duplicates_ratio:
            return "char_dup_ratio"
        if signals["fineweb_q_new_line_ratio"] > config.new_line_ratio:
            return "list_ratio"
        return None
