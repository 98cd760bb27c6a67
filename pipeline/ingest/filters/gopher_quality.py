"""Gopher's quality rules (Rae et al. 2021), as FineWeb applies them through datatrove.

Natural prose has a plausible length, plausible word lengths, few `#` and ellipses, is not a bullet
list, has mostly alphabetic words and uses a few common English stop words. A limit of 0 turns its
rule off, as in the reference.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from tokenmill.pipeline.ingest.document import Document
from tokenmill.pipeline.ingest.filters.rules import Rule, bind
from tokenmill.pipeline.recipe import table_config
from tokenmill.pipeline.text import is_symbol_word


@dataclass(frozen=True)
class GopherQualityConfig:
    min_doc_words: int
    max_doc_words: int
    min_avg_word_length: float
    max_avg_word_length: float
    max_symbol_word_ratio: float
    max_bullet_lines_ratio: float
    max_ellipsis_lines_ratio: float
    min_alpha_words_ratio: float
    min_stop_words: int
    stop_words: Sequence[str]


def _ratio(count: int, total: int) -> float:
    return count / total if total else 0.0


class GopherQualityFilter:
    name = "gopher_quality"
    signal_names: tuple[str, ...] = (
        "gopher_q_n_words",
        "gopher_q_n_non_symbol_words",
        "gopher_q_avg_word_length",
        "gopher_q_hash_word_ratio",
        "gopher_q_ellipsis_word_ratio",
        "gopher_q_bullet_lines_ratio",
        "gopher_q_end_ellipsis_lines_ratio",
        "gopher_q_alpha_words_ratio",
        "gopher_q_stop_words",
    )
    # In the reference's order; a limit of 0 turns its rule off, as in the reference.
    rules = (
        Rule("gopher_short_doc", "gopher_q_n_non_symbol_words", "<", "min_doc_words", off=0),
        Rule("gopher_long_doc", "gopher_q_n_non_symbol_words", ">", "max_doc_words", off=0),
        Rule("gopher_below_avg_threshold", "gopher_q_avg_word_length", "<", "min_avg_word_length", off=0),
        Rule("gopher_above_avg_threshold", "gopher_q_avg_word_length", ">", "max_avg_word_length", off=0),
        Rule("gopher_too_many_hashes", "gopher_q_hash_word_ratio", ">", "max_symbol_word_ratio", off=0),
        Rule("gopher_too_many_ellipsis", "gopher_q_ellipsis_word_ratio", ">", "max_symbol_word_ratio", off=0),
        Rule("gopher_too_many_bullets", "gopher_q_bullet_lines_ratio", ">", "max_bullet_lines_ratio", off=0),
        Rule(
            "gopher_too_many_end_ellipsis",
            "gopher_q_end_ellipsis_lines_ratio",
            ">",
            "max_ellipsis_lines_ratio",
            off=0,
        ),
        Rule(
            "gopher_below_alpha_threshold", "gopher_q_alpha_words_ratio", "<", "min_alpha_words_ratio", off=0
        ),
        Rule("gopher_enough_stop_words", "gopher_q_stop_words", "<", "min_stop_words", off=0),
    )
    settings = ("stop_words",)

    def __init__(self, config: GopherQualityConfig):
        self.config = config
        self.stop_words = frozenset(config.stop_words)
        self.limits = bind(self.rules, self.name, asdict(config))

    @classmethod
    def from_section(cls, section: dict[str, Any], all_signals: bool = False) -> GopherQualityFilter:
        return cls(table_config(GopherQualityConfig, section, "gopher_quality"))

    def signals(self, doc: Document) -> dict[str, float]:
        """The signals, with the per-word tests run once per distinct word (words repeat: Zipf) and
        weighted by its count; the sums are integers, so they equal the word-by-word ones."""
        text, words = doc.text, doc.words
        word_counts = Counter(words)
        non_symbol_words = non_symbol_chars = alpha_words = 0
        for word, count in word_counts.items():
            if not is_symbol_word(word):
                non_symbol_words += count
                non_symbol_chars += len(word) * count
            if any(char.isalpha() for char in word):
                alpha_words += count
        lines = text.splitlines()
        return {
            "gopher_q_n_words": len(words),
            "gopher_q_n_non_symbol_words": non_symbol_words,
            "gopher_q_avg_word_length": _ratio(non_symbol_chars, non_symbol_words),
            "gopher_q_hash_word_ratio": _ratio(text.count("#"), len(words)),
            "gopher_q_ellipsis_word_ratio": _ratio(text.count("...") + text.count("…"), len(words)),
            "gopher_q_bullet_lines_ratio": _ratio(
                sum(line.lstrip().startswith(("•", "-")) for line in lines), len(lines)
            ),
            "gopher_q_end_ellipsis_lines_ratio": _ratio(
                sum(line.rstrip().endswith(("...", "…")) for line in lines), len(lines)
            ),
            "gopher_q_alpha_words_ratio": _ratio(alpha_words, len(words)),
            "gopher_q_stop_words": len(self.stop_words.intersection(word_counts)),
        }

    def __call__(self, doc: Document) -> str | None:
        signals = self.signals(doc)
        doc.signals.update(signals)
        no_words = signals["gopher_q_n_non_symbol_words"] == 0
        for limit in self.limits:
            # The reference's mean over no words is NaN, which passes both length rules.
            if no_words and limit.signal == "gopher_q_avg_word_length":
                continue
            if limit.drops(signals[limit.signal]):
                return limit.reason
        return None
