"""tokenize's map side: input rows -> documents keyed, encoded and packed by bucket for the shuffle.

It lives apart from the job (jobs/stages/tokenize.py) so that a Spark task imports only the tokenizer
and the storage layer, not the job's other stages: on two cores each Python worker's imports count.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyspark import Accumulator

from tokenmill.tokenizer.encode import encode_texts
from tokenmill.tokenizer.encodings import EncodingSpec, encoding_for
from tokenmill.tokenizer.order import buckets, shuffle_orders
from tokenmill.tokenizer.runs import Packed, split_by_bucket
from tokenmill.tokenizer.upsample import COPY_FIELD, UpsampleTable, repeat_documents


class InputCounts(NamedTuple):
    """Rows one map task read, and how many of its kept rows had no usable cluster size; sent to
    bucket 0 beside the documents, so the counts are exact even when Spark retries a task."""

    rows: int
    unknown_cluster_size: int


Shuffled = tuple[int, Packed | InputCounts]


@dataclass(frozen=True)
class DocumentEncoder:
    """Input batches (id, text[, cluster size]) -> (bucket, Packed) pairs, then the task's counts.

    Empty and null texts are dropped (the driver counts them as rows - documents); with a table each
    document is repeated by its cluster size (tokenizer.upsample). Rows are grouped by bucket before
    encoding, so each bucket's tokens are one slice of the batch's packed tokens."""

    spec: EncodingSpec
    dtype: np.dtype
    seed: int
    buckets: int
    threads: int
    table: UpsampleTable | None
    column: str | None

    def __call__(self, batches: Iterator[pa.RecordBatch], encoded: Accumulator) -> Iterator[Shuffled]:
        encoding = encoding_for(self.spec)
        rows = unknown = 0
        for batch in batches:
            rows += batch.num_rows
            text = batch.column("text")
            kept = batch.filter(pc.and_(pc.is_valid(text), pc.greater(pc.binary_length(text), 0)))
            if self.table is None:
                copies = kept.select(["id", "text"]).append_column(
                    COPY_FIELD, pa.array(np.zeros(kept.num_rows, np.int32))
                )
            else:
                sizes = pc.fill_null(kept.column(self.column), 0).to_numpy(zero_copy_only=False)
                unknown += int((sizes < 1).sum())
                copies = repeat_documents(kept, self.table, self.column)
            if not copies.num_rows:
                continue
            ids = copies.column("id").to_pylist()
            copy_numbers = copies.column("copy").to_numpy(zero_copy_only=False)
            orders = shuffle_orders(self.seed, ids, copy_numbers)
            bucket_of_row = buckets(orders, self.buckets)
            grouped = np.argsort(bucket_of_row, kind="stable")
            texts = copies.column("text").to_pylist()
            texts = [texts[row] for row in grouped.tolist()]
            counts, tokens = encode_texts(encoding, texts, self.spec.eot_id, self.dtype, self.threads)
            encoded.add(len(ids))
            yield from split_by_bucket(
                bucket_of_row[grouped],
                orders[grouped],
                copy_numbers[grouped],
                [ids[row] for row in grouped.tolist()],
                counts,
                tokens,
            )
        yield 0, InputCounts(rows, unknown)
