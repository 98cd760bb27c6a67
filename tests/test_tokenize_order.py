"""tokenize's task-side pieces: texts packed as EOT + encode_ordinary's ids (with tiktoken's thread pool
or without), shuffle keys computed in Python equal to Spark's F.xxhash64 (int and long seeds, ASCII and
non-ASCII ids of every length class, copies), buckets in key order, packed documents that a map task
spills and a reduce task reads back by byte range, and a sorted run written to storage that reads back
by stream range in (key, id bytes, copy) order with repeated ids counted."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import DATA
from tokenmill.pipeline.storage import S3Options
from tokenmill.tokenizer import load_encoding
from tokenmill.tokenizer.encode import encode_texts
from tokenmill.tokenizer.order import buckets, shuffle_orders
from tokenmill.tokenizer.runs import (
    Packed,
    Spilled,
    read_range,
    read_spilled,
    run_counts,
    write_packed,
    write_run,
)

WORDS = (DATA / "text" / "cs336_german.txt").read_text(encoding="utf-8").split()


@pytest.mark.parametrize(
    ("name", "dtype", "threads"), [("gpt2", "<u2", 1), ("gpt2", "<u2", 2), ("o200k_base", "<u4", 1)]
)
def test_texts_pack_as_eot_then_encode_ordinary(name, dtype, threads):
    encoding = load_encoding(name)
    texts = [*WORDS[:30], "quotes <|endoftext|> as text", "Ünïcödé 東京 😀"]
    counts, tokens = encode_texts(encoding, texts, encoding.eot_token, np.dtype(dtype), threads)
    expected = [[encoding.eot_token, *encoding.encode_ordinary(text)] for text in texts]
    assert counts.tolist() == [len(ids) for ids in expected]
    assert tokens.dtype == np.dtype(dtype) and tokens.tolist() == [t for ids in expected for t in ids]


def _ids() -> list[str]:
    """Ids of 0 to 90 UTF-8 bytes (xxhash64 reads 32-byte stripes, then 8, 4 and single bytes)."""
    ids = ["", "a", "東京", "doc-00001", "😀" * 9]
    ids += [" ".join(WORDS[start : start + length]) for start in range(0, 40, 3) for length in (1, 4, 9)]
    return ids


@pytest.mark.parametrize("seed", [0, 7, -3, 1 << 40])
def test_keys_equal_sparks_xxhash64(spark, seed):
    from pyspark.sql import functions as F

    ids = _ids()
    rows = [(doc_id, copy) for doc_id in ids for copy in (0, 1, 2, 7)]
    frame = spark.createDataFrame(rows, "id string, copy int")
    key = F.when(F.col("copy") == 0, F.xxhash64(F.lit(seed), "id")).otherwise(
        F.xxhash64(F.lit(seed), "id", "copy")
    )
    expected = [row["key"] for row in frame.select(key.alias("key")).collect()]
    found = shuffle_orders(seed, [doc_id for doc_id, _ in rows], np.array([copy for _, copy in rows]))
    assert found.dtype == np.int64 and found.tolist() == expected


def test_buckets_cut_the_key_range_in_order():
    keys = np.sort(shuffle_orders(0, [f"d{i}" for i in range(5000)], np.zeros(5000, np.int32)))
    for count in (1, 2, 3, 7, 64):
        found = buckets(keys, count)
        assert (np.diff(found) >= 0).all() and found.min() >= 0 and found.max() == count - 1
        assert np.bincount(found).min() > 5000 / count * 0.6  # a uniform hash: buckets of about equal size
    edges = np.array([-(1 << 63), -1, 0, (1 << 63) - 1], dtype=np.int64)
    assert buckets(edges, 2).tolist() == [0, 0, 1, 1]


def test_a_run_reads_back_sorted_by_key_id_bytes_and_copy(tmp_path):
    """Two parts of a bucket, with an id repeated and a forced key tie between "b" and "é"."""
    ids = ["é", "b", "a", "b", "a"]
    orders = np.array([5, 5, -9, 1, 1], dtype=np.int64)
    copies = np.array([0, 0, 0, 3, 3], dtype=np.int32)
    counts = np.array([2, 3, 1, 2, 4], dtype=np.int64)
    tokens = np.arange(12, dtype="<u2")
    parts = [
        Packed(orders[:2], copies[:2], counts[:2], ids[:2], tokens[:5]),
        Packed(orders[2:], copies[2:], counts[2:], ids[2:], tokens[5:]),
    ]
    uri = str(tmp_path / "run.bin")
    summary = write_run(parts, uri, S3Options())
    assert summary == (5, 12, 3, 6, 0)  # no (id, copy) twice: "a" and "b" copy 3 have different keys
    assert run_counts(uri, S3Options()).tolist() == [1, 4, 2, 3, 2]
    batches = list(read_range(uri, S3Options(), 100, 0, 10**9, 2))
    rows = batches[0].to_pydict()
    assert rows["id"] == ["a", "a", "b", "b", "é"]  # -9; 1 ("a" < "b"); 5 ("b" < "é" in UTF-8 bytes)
    assert rows["start"] == [100, 101, 105, 107, 110]
    assert [np.frombuffer(chunk, "<u2").tolist() for chunk in rows["tokens"]] == [
        [5], [8, 9, 10, 11], [6, 7], [2, 3, 4], [0, 1]
    ]  # fmt: skip
    middle = list(read_range(uri, S3Options(), 100, 102, 108, 2))[0].to_pydict()
    assert middle["id"] == ["a", "b", "b"]  # the documents overlapping [102, 108), whole
    twice = write_run([Packed(orders[:1], copies[:1], counts[:1], ids[:1], tokens[:2])] * 2, uri, S3Options())
    assert twice.repeats == 1


def test_spilled_packs_read_back_equal_by_their_byte_ranges(tmp_path):
    """Three packs of mixed sizes in one spill file (as a map task writes them); the references,
    given out of order and for two files, read back exactly the packs they point to."""
    encoding = load_encoding("gpt2")
    packs = []
    for start in (0, 7, 30):
        texts = WORDS[start : start + 5 + start]
        counts, tokens = encode_texts(encoding, texts, encoding.eot_token, np.dtype("<u2"))
        ids = [f"doc-{start}-{index}-é" for index in range(len(texts))]
        orders = shuffle_orders(0, ids, np.zeros(len(ids), np.int32))
        packs.append(Packed(orders, np.arange(len(ids), dtype=np.int32), counts, ids, tokens))
    refs = []
    for name, in_file in (("a.bin", packs[:2]), ("b.bin", packs[2:])):
        uri, offset = str(tmp_path / name), 0
        with open(uri, "wb") as handle:
            for pack in in_file:
                length = write_packed(handle, pack)
                refs.append(Spilled(uri, offset, length))
                offset += length
        assert offset == (tmp_path / name).stat().st_size
    found = list(read_spilled([refs[2], refs[1], refs[0]], S3Options(), np.dtype("<u2")))
    assert len(found) == 3
    for pack, back in zip(packs, [found[1], found[2], found[0]], strict=True):  # a.bin's in offset order
        assert back.ids == pack.ids and back.tokens.tolist() == pack.tokens.tolist()
        for field in ("orders", "copies", "counts"):
            assert getattr(back, field).tolist() == getattr(pack, field).tolist()
            assert getattr(back, field).dtype == getattr(pack, field).dtype
