"""Documents -> tokens, one Arrow batch at a time: EOT, then the text encoded as ordinary text.

`encode_ordinary` is used on purpose: a web page that contains the string "<|endoftext|>" gets the
tokens of that text, never the special token, so documents cannot forge a boundary.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa

from tokenmill.tokenizer.encodings import EncodingSpec, encoding_for

TOKENS_SCHEMA = pa.schema(
    [("id", pa.string()), ("order", pa.int64()), ("n", pa.int64()), ("tokens", pa.binary())]
)


def encode_batches(
    batches: Iterator[pa.RecordBatch], spec: EncodingSpec, dtype: np.dtype
) -> Iterator[pa.RecordBatch]:
    """(id, order, text) batches -> (id, order, n, tokens): `tokens` packs EOT + the text's ids in
    `dtype`, little-endian; `n` counts them."""
    encoding = encoding_for(spec)
    eot = spec.eot_id
    for batch in batches:
        counts, packed = [], []
        for text in batch.column("text").to_pylist():
            ids = encoding.encode_ordinary(text)
            ids.insert(0, eot)
            counts.append(len(ids))
            packed.append(np.array(ids, dtype=dtype).tobytes())
        yield pa.RecordBatch.from_arrays(
            [
                batch.column("id"),
                batch.column("order"),
                pa.array(counts, pa.int64()),
                pa.array(packed, pa.binary()),
            ],
            schema=TOKENS_SCHEMA,
        )
