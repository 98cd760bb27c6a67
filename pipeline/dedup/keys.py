"""Per-batch dedup keys and PII scrubbing over Arrow batches: the Spark-free half of `jobs/dedup.py`.

For every document: a 64-bit hash of its normalized text (exact dedup) and one 64-bit key per LSH band
(MinHash dedup). Keys are stored as signed int64, the bit pattern of the unsigned hash, because that is
what Parquet and Spark hold natively.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import numpy as np
import pyarrow as pa

from tokenmill.pipeline.dedup.minhash import MinHasher, normalize_for_dedup
from tokenmill.pipeline.dedup.pii import PII_KINDS, PIIConfig, scrub

KEY_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("text_hash", pa.int64()),
        ("band_keys", pa.list_(pa.int64())),
        ("signature", pa.list_(pa.int64())),
    ]
)


def text_hash(normalized: str) -> int:
    """Signed 64-bit view of blake2b of a `normalize_for_dedup` text: equal for texts that differ only in
    case, punctuation and spacing."""
    digest = hashlib.blake2b(normalized.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def _list_column(matrix: np.ndarray) -> pa.ListArray:
    """An (n, k) uint64 matrix as an Arrow list<int64> column, without a Python loop."""
    n, k = matrix.shape
    offsets = pa.array(np.arange(0, (n + 1) * k, k, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(matrix.view(np.int64).reshape(-1)))


def dedup_keys(
    batches: Iterator[pa.RecordBatch], hasher: MinHasher, with_signature: bool
) -> Iterator[pa.RecordBatch]:
    """(id, text) batches -> (id, text_hash, band_keys, signature) batches; `signature` (the full
    MinHash, for verifying candidate pairs) is null unless asked for."""
    for batch in batches:
        if batch.num_rows == 0:
            continue
        texts = [normalize_for_dedup(text or "") for text in batch.column("text").to_pylist()]
        signatures = hasher.signatures(texts, normalized=True)
        if with_signature:
            signature_column = _list_column(signatures)
        else:
            signature_column = pa.nulls(len(texts), pa.list_(pa.int64()))
        yield pa.RecordBatch.from_arrays(
            [
                batch.column("id"),
                pa.array([text_hash(text) for text in texts], pa.int64()),
                _list_column(hasher.band_keys(signatures)),
                signature_column,
            ],
            schema=KEY_SCHEMA,
        )


def scrub_batches(batches: Iterator[pa.RecordBatch], config: PIIConfig) -> Iterator[pa.RecordBatch]:
    """Replace PII in the `text` column; add `pii_<kind>` replacement counts per document."""
    for batch in batches:
        texts, counts = [], {kind: [] for kind in PII_KINDS}
        for text in batch.column("text").to_pylist():
            clean, found = scrub(text or "", config)
            texts.append(clean)
            for kind in PII_KINDS:
                counts[kind].append(found.get(kind, 0))
        table = pa.Table.from_batches([batch]).set_column(
            batch.schema.get_field_index("text"), "text", pa.array(texts, pa.string())
        )
        for kind in PII_KINDS:
            table = table.append_column(f"pii_{kind}", pa.array(counts[kind], pa.int32()))
        yield from table.to_batches()
