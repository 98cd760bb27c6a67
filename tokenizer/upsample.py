"""Rehydration: documents from bigger duplicate clusters are repeated, up to a cap, before the shuffle.

MinHash dedup keeps one document of each cluster of near-duplicates and records the cluster's size. A
page copied across many sites is, up to a point, a page people found worth copying, so FineWeb-2 repeats
the kept document by its cluster's size ("re-hydrating" the deduplicated set) and reports gains, above
all for high-resource languages; the very largest clusters are mostly boilerplate and stay at one copy.

The default table is FineWeb-2's published weights (github.com/huggingface/fineweb-2, README.md,
"Deduplication"): cluster size 1 -> 1 copy, 2 -> 2, 3 and 4 -> 3, 5 to 99 -> 5, 100 to 999 -> 8,
1000 and more -> 1. A table of one's own is a TOML file of the same shape, `--upsample-table FILE`:

    [copies]   # a row's key is the smallest cluster size it covers, up to the next row's key
    1 = 1
    2 = 2
    3 = 3
    5 = 5
    100 = 8
    1000 = 1

Each copy is numbered (0 is the document itself) so that the shuffle can give every copy its own key:
copies land apart in the stream, never side by side.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import tomllib

COPY_FIELD = pa.field("copy", pa.int32())


@dataclass(frozen=True)
class UpsampleTable:
    """Copies of a document by the size of its duplicate cluster."""

    rows: tuple[tuple[int, int], ...]  # (smallest cluster size of the row, copies), ascending from 1

    def __post_init__(self) -> None:
        starts = [start for start, _ in self.rows]
        if not starts or starts[0] != 1 or starts != sorted(set(starts)):
            raise ValueError("rows must start at cluster size 1 and rise, each size once")
        if any(copies < 1 for _, copies in self.rows):
            raise ValueError("every row needs at least 1 copy (selection, not rehydration, drops documents)")

    def copies(self, cluster_sizes: np.ndarray) -> np.ndarray:
        """Copies for each cluster size; a size below 1 (unknown) gets one copy, the document as it is."""
        starts = np.array([start for start, _ in self.rows], dtype=np.int64)
        copies = np.array([copies for _, copies in self.rows], dtype=np.int64)
        sizes = np.asarray(cluster_sizes, dtype=np.int64)
        row = np.searchsorted(starts, sizes, side="right") - 1
        return np.where(sizes >= 1, copies[np.maximum(row, 0)], 1)

    def describe(self) -> list[list[int]]:
        """The rows as JSON lists, for the manifest and the completion fingerprint."""
        return [[start, copies] for start, copies in self.rows]


FINEWEB2 = UpsampleTable(((1, 1), (2, 2), (3, 3), (5, 5), (100, 8), (1000, 1)))


def load_table(path: str | Path) -> UpsampleTable:
    """A table from a TOML file with a [copies] section of `cluster size = copies` rows (ValueError if
    it is not one)."""
    try:
        with open(path, "rb") as handle:
            section = tomllib.load(handle).get("copies")
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"cannot read it: {exc}") from None
    if not isinstance(section, dict) or not section:
        raise ValueError("it needs a [copies] section of `cluster size = copies` rows")
    try:
        rows = sorted((int(size), copies) for size, copies in section.items())
    except ValueError:
        raise ValueError("every key of [copies] must be a whole cluster size") from None
    if not all(isinstance(copies, int) and not isinstance(copies, bool) for _, copies in rows):
        raise ValueError("every value of [copies] must be a whole number of copies")
    return UpsampleTable(tuple(rows))


def repeat_documents(batch: pa.RecordBatch, table: UpsampleTable, column: str) -> pa.RecordBatch:
    """(id, text, <column>) -> (id, text, copy): each document as many times as the table gives for its
    cluster size (a null size counts as unknown), the copies numbered 0, 1, ..."""
    sizes = pc.fill_null(batch.column(column), 0).to_numpy(zero_copy_only=False)
    counts = table.copies(sizes)
    rows = np.repeat(np.arange(len(counts)), counts)
    copy = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
    repeated = batch.select(["id", "text"]).take(pa.array(rows, pa.int64()))
    return repeated.append_column(COPY_FIELD, pa.array(copy, pa.int32()))
