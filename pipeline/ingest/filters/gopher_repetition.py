"""Gopher's repetition rules (Rae et al. 2021, table A1), as FineWeb applies them through datatrove.

Pages that repeat themselves (menus, tag clouds, boilerplate, spam) are dropped when too many of their
paragraphs or lines are duplicates, when one 2/3/4-gram covers too many characters, or when too many
characters sit in duplicated 5..10-grams. A threshold of 0 turns the line/paragraph rules off, as in
the reference.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from itertools import accumulate
from typing import Any

import numpy as np

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


class NGrams:
    """The n-gram measures of one document's words, computed on arrays rather than per n-gram strings.

    Two kinds of n-gram identity are in play. The top n-gram rules count word tuples: each word gets a
    dense id, and the n-grams' ids are built from the (n-1)-grams', so equal keys mean equal tuples.
    The duplicated n-gram rules compare the joined words ("".join, no separator, as in the reference),
    and there different tuples can make one string; those are keyed by a fingerprint of the string's
    characters (prefix sums over its code points, modulo 2**64). Equal strings always have equal
    fingerprints, so an n-gram whose fingerprint occurs once is a string that occurs once, and only the
    others are compared as strings: the results are exactly those of comparing every string.
    """

    def __init__(self, words: list[str]):
        self.words = words
        self.joined = "".join(words)
        self.offsets = list(accumulate(map(len, words), initial=0))
        # Each distinct word's id is its rank by first occurrence.
        vocabulary = dict(zip(dict.fromkeys(words), range(len(words)), strict=False))
        self._word_ids = np.fromiter(map(vocabulary.__getitem__, words), np.int64, len(words))
        self._vocabulary = len(vocabulary)
        self._ngrams: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._offset_array = np.asarray(self.offsets, dtype=np.uint64)
        self._prefix_sums: tuple[np.ndarray, ...] | None = None

    def _ngram_ids(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For the n-grams as word tuples: each n-gram's id (dense, equal exactly when the tuples are
        equal), each id's first position and its count, for n >= 2. An n-gram's id comes from the
        (n-1)-gram's id and its last word's id."""
        if n not in self._ngrams:
            previous_ids = self._word_ids if n == 2 else self._ngram_ids(n - 1)[0]
            keys = previous_ids[:-1] * self._vocabulary + self._word_ids[n - 1 :]
            _, first, ids, counts = np.unique(
                keys, return_index=True, return_inverse=True, return_counts=True
            )
            self._ngrams[n] = ids, first, counts
        return self._ngrams[n]

    def top_chars(self, n: int) -> int:
        """Characters covered by the most frequent n-gram: len(" ".join(gram)) * its count; of equally
        frequent n-grams, the one that occurs first (as a Counter over the tuples would pick it)."""
        _, first, counts = self._ngram_ids(n)
        count = counts.max()
        start = int(first[counts == count].min())
        return (self.offsets[start + n] - self.offsets[start] + n - 1) * int(count)

    def _fingerprints(self, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """A uint64 per substring joined[start:end] that depends on its characters only: its length and
        the sums of c, c*k and c*k*k over its code points c at offsets k from its start."""
        if self._prefix_sums is None:
            utf32 = self.joined.encode("utf-32-le", "surrogatepass")  # one 4-byte unit per code point
            codes = np.frombuffer(utf32, np.uint32).astype(np.uint64)
            positions = np.arange(len(codes), dtype=np.uint64)
            self._prefix_sums = tuple(
                np.concatenate((np.zeros(1, np.uint64), np.cumsum(values, dtype=np.uint64)))
                for values in (codes, codes * positions, codes * positions * positions)
            )
        total, weighted, squared = (sums[ends] - sums[starts] for sums in self._prefix_sums)
        weighted_from_start = weighted - starts * total
        squared_from_start = squared - np.uint64(2) * starts * weighted + starts * starts * total
        return (
            (ends - starts)
            + total * np.uint64(0x9E3779B97F4A7C15)
            + weighted_from_start * np.uint64(0xC2B2AE3D27D4EB4F)
            + squared_from_start * np.uint64(0x165667B19E3779F9)
        )

    def duplicated_chars(self, n: int) -> int:
        """Characters in n-grams already seen, walking left to right and jumping past each repeat.

        Only n-grams whose fingerprint repeats can be seen twice; the walk steps one by one over all
        the others, so it goes straight from one such candidate to the next."""
        count = len(self.words) - n + 1
        if count <= 1:
            return 0
        fingerprints = self._fingerprints(self._offset_array[:count], self._offset_array[n:])
        _, inverse, counts = np.unique(fingerprints, return_inverse=True, return_counts=True)
        candidates = np.flatnonzero(counts[inverse] > 1)
        seen: set[str] = set()
        repeated_chars = next_index = 0
        for index in candidates.tolist():
            if index < next_index:  # jumped over
                continue
            gram = self.joined[self.offsets[index] : self.offsets[index + n]]
            if gram in seen:
                repeated_chars += len(gram)
                next_index = index + n
            else:
                seen.add(gram)
                next_index = index + 1
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
        ngrams = NGrams(doc.words)
        for n in self.top_sizes:
            # The reference skips a size when the text has fewer than n words: 0 here, which breaks no limit.
            value = ngrams.top_chars(n) / len(text) if len(doc.words) >= n else 0.0
            yield f"gopher_rep_top_{n}_gram_char_frac", value
        for n in self.dup_sizes:
            yield f"gopher_rep_dup_{n}_gram_char_frac", ngrams.duplicated_chars(n) / len(text)

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
