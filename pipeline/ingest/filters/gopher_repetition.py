"""Gopher's repetition rules (Rae et al. 2021, table A1), as FineWeb applies them through datatrove.

Pages that repeat themselves (menus, tag clouds, boilerplate, spam) are dropped when too many of their
paragraphs or lines are duplicates, when one 2/3/4-gram covers too many characters, or when too many
characters sit in duplicated 5..10-grams. A threshold of 0 turns the line/paragraph rules off, as in
the reference.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from itertools import accumulate
from typing import Any

from tokenmill.pipeline.ingest.document import Document
from tokenmill.pipeline.ingest.filters.rules import Rule, bind
from tokenmill.pipeline.recipe import RecipeError, table_config
from tokenmill.pipeline.text import count_duplicates

# The n-gram sizes that have a signal column; a recipe chooses which of them have a rule.
TOP_NGRAM_SIZES = (2, 3, 4)
DUP_NGRAM_SIZES = (5, 6, 7, 8, 9, 10)

_PARAGRAPH_SPLIT = re.compile(r"\n{2,}")
_LINE_SPLIT = re.compile(r"\n+")


@dataclass(frozen=True)
class GopherRepetitionConfig:
    dup_line_frac: float
    dup_para_frac: float
    dup_line_char_frac: float
    dup_para_char_frac: float
    top_ngram_sizes: Sequence[int]
    top_ngram_fracs: Sequence[float]
    dup_ngram_sizes: Sequence[int]
    dup_ngram_fracs: Sequence[float]

    def __post_init__(self) -> None:
        for kind, sizes, fracs, supported in (
            ("top", self.top_ngram_sizes, self.top_ngram_fracs, TOP_NGRAM_SIZES),
            ("dup", self.dup_ngram_sizes, self.dup_ngram_fracs, DUP_NGRAM_SIZES),
        ):
            if len(sizes) != len(fracs):
                raise RecipeError(
                    f"[gopher_repetition] {kind}_ngram_sizes and {kind}_ngram_fracs differ in length"
                )
            if not set(sizes) <= set(supported) or len(set(sizes)) != len(sizes):
                raise RecipeError(
                    f"[gopher_repetition] {kind}_ngram_sizes must be distinct sizes among {supported}: "
                    f"{sizes}"
                )


def top_ngram_chars(words: list[str], n: int) -> int:
    """Characters covered by the most frequent n-gram: len(" ".join(gram)) * its count.

    Tuples stand in for the joined strings: words never contain whitespace, so the two are one-to-one,
    and Counter keeps first-occurrence order, so ties resolve as they do over strings.
    """
    counts = Counter(zip(*(words[i:] for i in range(n)), strict=False))
    gram, count = counts.most_common(1)[0]
    return (sum(map(len, gram)) + n - 1) * count


def duplicated_ngram_chars(joined: str, offsets: list[int], n: int) -> int:
    """Characters in n-grams already seen, walking left to right and jumping past each repeat.

    An n-gram here is "".join(words[i:i+n]) (no separator, as in the reference), taken as a slice of
    the joined words; `offsets` are the prefix sums of the word lengths.
    """
    grams = [joined[start:end] for start, end in zip(offsets, offsets[n:], strict=False)]
    if len(set(grams)) == len(grams):
        return 0
    seen: set[str] = set()
    repeated_chars, idx = 0, 0
    while idx < len(grams):
        gram = grams[idx]
        if gram in seen:
            repeated_chars += len(gram)
            idx += n
        else:
            seen.add(gram)
            idx += 1
    return repeated_chars


class GopherRepetitionFilter:
    """With `all_signals` every fraction is computed and written; without, the rules run in the
    reference's order and the first broken one ends the work: a dropped document then has the signals
    computed up to that rule, a kept one all of them (the same values either way)."""

    name = "gopher_repetition"
    signal_names: tuple[str, ...] = (
        "gopher_rep_dup_para_frac",
        "gopher_rep_dup_para_char_frac",
        "gopher_rep_dup_line_frac",
        "gopher_rep_dup_line_char_frac",
        *(f"gopher_rep_top_{n}_gram_char_frac" for n in TOP_NGRAM_SIZES),
        *(f"gopher_rep_dup_{n}_gram_char_frac" for n in DUP_NGRAM_SIZES),
    )
    # A limit of 0 turns a line or paragraph rule off, as in the reference; an n-gram rule is off when
    # its size is not in the recipe's list.
    rules = (
        Rule("dup_para_frac", "gopher_rep_dup_para_frac", ">", "dup_para_frac", off=0),
        Rule("dup_para_char_frac", "gopher_rep_dup_para_char_frac", ">", "dup_para_char_frac", off=0),
        Rule("dup_line_frac", "gopher_rep_dup_line_frac", ">", "dup_line_frac", off=0),
        Rule("dup_line_char_frac", "gopher_rep_dup_line_char_frac", ">", "dup_line_char_frac", off=0),
        Rule(
            "top_{n}_gram",
            "gopher_rep_top_{n}_gram_char_frac",
            ">",
            "top_ngram_fracs",
            per_size="top_ngram_sizes",
        ),
        Rule(
            "duplicated_{n}_n_grams",
            "gopher_rep_dup_{n}_gram_char_frac",
            ">",
            "dup_ngram_fracs",
            per_size="dup_ngram_sizes",
        ),
    )
    settings: tuple[str, ...] = ()

    def __init__(self, config: GopherRepetitionConfig, all_signals: bool = False):
        self.config = config
        self.all_signals = all_signals
        # One limit per signal at most (the sizes are distinct), checked as soon as the signal is known.
        self.limits = {limit.signal: limit for limit in bind(self.rules, self.name, asdict(config))}
        # n-gram sizes in the order their values are computed: the rules' (as the reference checks them),
        # then the sizes no rule reads, whose signals are still written.
        self.top_sizes = [
            *config.top_ngram_sizes,
            *(n for n in TOP_NGRAM_SIZES if n not in config.top_ngram_sizes),
        ]
        self.dup_sizes = [
            *config.dup_ngram_sizes,
            *(n for n in DUP_NGRAM_SIZES if n not in config.dup_ngram_sizes),
        ]

    @classmethod
    def from_section(cls, section: dict[str, Any], all_signals: bool = False) -> GopherRepetitionFilter:
        return cls(table_config(GopherRepetitionConfig, section, "gopher_repetition"), all_signals)

    def _signals(self, doc: Document) -> Iterator[tuple[str, float]]:
        """(signal, value) for a non-empty text: the rules' signals in the reference's order (paragraphs,
        lines, top n-grams, duplicated n-grams), then the others."""
        text = doc.text
        paragraphs = _PARAGRAPH_SPLIT.split(text.strip())
        duplicates, duplicate_chars = count_duplicates(paragraphs)
        yield "gopher_rep_dup_para_frac", duplicates / len(paragraphs)
        yield "gopher_rep_dup_para_char_frac", duplicate_chars / len(text)
        lines = _LINE_SPLIT.split(text)
        duplicates, duplicate_chars = count_duplicates(lines)
        yield "gopher_rep_dup_line_frac", duplicates / len(lines)
        yield "gopher_rep_dup_line_char_frac", duplicate_chars / len(text)
        words = doc.words
        for n in self.top_sizes:
            # The reference skips a size when the text has fewer than n words: 0 here, which breaks no limit.
            value = top_ngram_chars(words, n) / len(text) if len(words) >= n else 0.0
            yield f"gopher_rep_top_{n}_gram_char_frac", value
        joined = "".join(words)
        offsets = list(accumulate(map(len, words), initial=0))
        for n in self.dup_sizes:
            yield f"gopher_rep_dup_{n}_gram_char_frac", duplicated_ngram_chars(joined, offsets, n) / len(text)

    def __call__(self, doc: Document) -> str | None:
        if not doc.text:
            doc.signals.update(dict.fromkeys(self.signal_names, 0.0))
            return "empty"
        drop: str | None = None
        for name, value in self._signals(doc):
            doc.signals[name] = value
            limit = self.limits.get(name)
            if drop is None and limit is not None and limit.drops(value):
                drop = limit.reason
                if not self.all_signals:
                    break
        return drop
