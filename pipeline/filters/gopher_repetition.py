"""Gopher's repetition rules (Rae et al. 2021, table A1), as FineWeb applies them through datatrove.

Pages that repeat themselves (menus, tag clouds, boilerplate, spam) are dropped when too many of their
paragraphs or lines are duplicates, when one 2/3/4-gram covers too many characters, or when too many
characters sit in duplicated 5..10-grams. A threshold of 0 turns the line/paragraph rules off, as in
the reference.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

from pipeline.document import Document
from pipeline.recipe import RecipeError
from pipeline.text import count_duplicates

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
            if not set(sizes) <= set(supported):
                raise RecipeError(
                    f"[gopher_repetition] {kind}_ngram_sizes must be among {supported}: {sizes}"
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
    name = "gopher_repetition"
    signal_names: tuple[str, ...] = (
        "gopher_rep_dup_para_frac",
        "gopher_rep_dup_para_char_frac",
        "gopher_rep_dup_line_frac",
        "gopher_rep_dup_line_char_frac",
        *(f"gopher_rep_top_{n}_gram_char_frac" for n in TOP_NGRAM_SIZES),
        *(f"gopher_rep_dup_{n}_gram_char_frac" for n in DUP_NGRAM_SIZES),
    )

    def __init__(self, config: GopherRepetitionConfig):
        self.config = config

    @classmethod
    def from_section(cls, section: dict[str, Any]) -> GopherRepetitionFilter:
        try:
            return cls(GopherRepetitionConfig(**section))
        except TypeError as error:
            raise RecipeError(f"recipe table [gopher_repetition]: {error}") from None

    def signals(self, doc: Document) -> dict[str, float]:
        """Every repetition fraction of the document (all zero for an empty one)."""
        text = doc.text
        if not text:
            return dict.fromkeys(self.signal_names, 0.0)
        paragraphs = _PARAGRAPH_SPLIT.split(text.strip())
        dup_paras, dup_para_chars = count_duplicates(paragraphs)
        lines = _LINE_SPLIT.split(text)
        dup_lines, dup_line_chars = count_duplicates(lines)
        signals = {
            "gopher_rep_dup_para_frac": dup_paras / len(paragraphs),
            "gopher_rep_dup_para_char_frac": dup_para_chars / len(text),
            "gopher_rep_dup_line_frac": dup_lines / len(lines),
            "gopher_rep_dup_line_char_frac": dup_line_chars / len(text),
        }
        words = doc.words
        for n in TOP_NGRAM_SIZES:
            chars = top_ngram_chars(words, n) if len(words) >= n else 0
            signals[f"gopher_rep_top_{n}_gram_char_frac"] = chars / len(text)
        joined = "".join(words)
        offsets = list(accumulate(map(len, words), initial=0))
        for n in DUP_NGRAM_SIZES:
            signals[f"gopher_rep_dup_{n}_gram_char_frac"] = duplicated_ngram_chars(joined, offsets, n) / len(
                text
            )
        return signals

    def __call__(self, doc: Document) -> str | None:
        signals = self.signals(doc)
        doc.signals.update(signals)
        if not doc.text:
            return "empty"
        config = self.config
        for reason, limit in (
            ("dup_para_frac", config.dup_para_frac),
            ("dup_para_char_frac", config.dup_para_char_frac),
            ("dup_line_frac", config.dup_line_frac),
            ("dup_line_char_frac", config.dup_line_char_frac),
        ):
            if limit and signals[f"gopher_rep_{reason}"] > limit:
                return reason
        for n, limit in zip(config.top_ngram_sizes, config.top_ngram_fracs, strict=True):
            # The reference skips a size when the text has fewer than n words.
            if len(doc.words) >= n and signals[f"gopher_rep_top_{n}_gram_char_frac"] > limit:
                return f"top_{n}_gram"
        for n, limit in zip(config.dup_ngram_sizes, config.dup_ngram_fracs, strict=True):
            if signals[f"gopher_rep_dup_{n}_gram_char_frac"] > limit:
                return f"duplicated_{n}_n_grams"
        return None
