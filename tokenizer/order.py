"""The shuffle order of documents: Spark's `xxhash64(seed, id)`, and `xxhash64(seed, id, k)` for a
document's k-th copy, computed in Python so that tasks need no Spark SQL to place a document.

Spark hashes a row's columns in turn, starting from the seed 42 and using each column's hash as the
seed of the next: an int as its 4 little-endian bytes, a long as 8, a string as its UTF-8 bytes. The
result, read as a signed 64-bit integer, is the key tokenize sorted by when Spark computed it, so the
shards keep their bytes. The hash is uniform, so the top bits of the key cut the stream into buckets
of about equal size without sampling, and the buckets in key order are the stream in order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xxhash

SPARK_SEED = 42
_INT_MIN, _INT_MAX = -(1 << 31), (1 << 31) - 1


def _literal_bytes(value: int) -> bytes:
    """A Python int as Spark's `lit` types it: int (4 bytes) when it fits, else long (8 bytes)."""
    size = 4 if _INT_MIN <= value <= _INT_MAX else 8
    return value.to_bytes(size, "little", signed=True)


def seed_hash(seed: int) -> int:
    """The running hash after the seed column: the starting point of every document's key."""
    return xxhash.xxh64_intdigest(_literal_bytes(seed), SPARK_SEED)


def shuffle_orders(seed: int, ids: Sequence[str], copies: Sequence[int] | np.ndarray) -> np.ndarray:
    """int64 keys: xxhash64(seed, id) for copy 0, xxhash64(seed, id, copy) for a copy k > 0."""
    start = seed_hash(seed)
    hashed = xxhash.xxh64_intdigest
    keys = np.empty(len(ids), dtype=np.uint64)
    for row, (doc_id, copy) in enumerate(zip(ids, np.asarray(copies).tolist(), strict=True)):
        key = hashed(doc_id.encode("utf-8"), start)
        if copy:
            key = hashed(copy.to_bytes(4, "little", signed=True), key)
        keys[row] = key
    return keys.view(np.int64)


def buckets(orders: np.ndarray, count: int) -> np.ndarray:
    """The bucket (0 .. count - 1) of each key: equal slices of the key range, in key order."""
    if not 1 <= count < 1 << 31:
        raise ValueError(f"bucket count {count} is outside 1 .. 2**31 - 1")
    unsigned = orders.view(np.uint64) ^ np.uint64(1 << 63)  # signed order -> unsigned order
    return ((unsigned >> np.uint64(32)) * np.uint64(count) >> np.uint64(32)).astype(np.int32)
