"""Where tokens go: whole documents in validation, training cut at fixed sizes with pieces that continue
across shards, and the shard writer's three files agreeing with each other."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tokenmill.pipeline.storage import S3Options
from tokenmill.tokenizer.layout import Layout, pieces
from tokenmill.tokenizer.shards import UINT16, decode_header, format_for_vocab, read_index, read_shard
from tokenmill.tokenizer.writer import ShardWriter


def _docs(counts: list[int]) -> pa.RecordBatch:
    tokens = [np.arange(n, dtype="<u2").tobytes() for n in counts]
    starts = (np.cumsum(counts) - counts).tolist()
    return pa.RecordBatch.from_pydict(
        {"id": [f"d{i}" for i in range(len(counts))], "n": counts, "tokens": tokens, "start": starts}
    )


def test_validation_keeps_whole_documents_and_training_is_cut_at_shard_size():
    # documents of 4, 3, 12 and 2 tokens; validation asked for 5 -> the first two (7 tokens) whole
    batch = _docs([4, 3, 12, 2])
    layout = Layout(val_tokens=7, train_tokens=14, shard_tokens=5)
    assert layout.shard_sizes() == [7, 5, 5, 4]
    out = pieces(batch, layout, itemsize=2).to_pydict()
    rows = list(zip(out["id"], out["shard"], out["offset"], out["piece"], strict=True))
    assert rows == [
        ("d0", 0, 0, 0), ("d1", 0, 4, 0),                  # validation: whole
        ("d2", 1, 0, 0), ("d2", 2, 0, 1), ("d2", 3, 0, 2),  # 12 tokens over three shards of 5
        ("d3", 3, 2, 0),
    ]  # fmt: skip
    sizes = [len(chunk) // 2 for chunk in out["tokens"]]
    assert sizes == [4, 3, 5, 5, 2, 2]
    d2 = b"".join(chunk for chunk, doc in zip(out["tokens"], out["id"], strict=True) if doc == "d2")
    assert d2 == np.arange(12, dtype="<u2").tobytes()


def test_writer_files_agree_and_gaps_are_refused(tmp_path):
    writer = ShardWriter(str(tmp_path), 1, UINT16, S3Options())
    batch = pa.RecordBatch.from_pydict(
        {
            "offset": [0, 3],
            "piece": [1, 0],  # a continuation first, then a document start at 3
            "id": ["a", "b"],
            "tokens": [np.array([7, 8, 9], "<u2").tobytes(), np.array([50256, 5], "<u2").tobytes()],
        }
    )
    writer.add(batch)
    entry = writer.commit()
    assert (entry["bin"], entry["tokens"], entry["documents"]) == ("train_000001.bin", 5, 1)
    assert read_shard(tmp_path / "train_000001.bin").tolist() == [7, 8, 9, 50256, 5]
    assert read_index(tmp_path / "train_000001.bin").tolist() == [3]
    assert pq.read_table(tmp_path / "train_000001.parquet").column("tokens").to_pylist() == [
        [7, 8, 9],
        [50256, 5],
    ]

    gap = ShardWriter(str(tmp_path), 2, UINT16, S3Options())
    with pytest.raises(RuntimeError, match="not contiguous"):
        gap.add(batch.slice(1))  # starts at offset 3 in an empty shard
    gap.abort()
    assert not list(tmp_path.glob("train_000002.*"))


def test_a_failed_commit_keeps_its_own_error_and_leaves_no_staged_file(tmp_path):
    """The task aborts a writer whose commit failed; that second abort must not replace the error, and
    the staged files beside the targets are gone."""
    (tmp_path / "val_000000.bin").mkdir()  # a directory where the shard's .bin should go
    writer = ShardWriter(str(tmp_path), 0, UINT16, S3Options())
    writer.add(
        pa.RecordBatch.from_pydict({"offset": [0], "piece": [0], "id": ["a"], "tokens": [b"\x01\x00"]})
    )
    with pytest.raises(OSError) as failed:
        try:
            writer.commit()
        finally:
            writer.abort()
    assert not isinstance(failed.value, FileNotFoundError) and "val_000000.bin" in str(failed.value)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["val_000000.bin"]  # nothing else left


def test_header_errors_are_clear(tmp_path):
    assert format_for_vocab(65_536) is UINT16 and format_for_vocab(65_537).dtype.itemsize == 4
    with pytest.raises(ValueError, match="neither 20240520"):
        decode_header(np.array([123, 1, 0] + [0] * 253, "<i4").tobytes())
    with pytest.raises(ValueError, match="does not go with magic"):
        decode_header(np.array([20240520, 7, 0] + [0] * 253, "<i4").tobytes())
    path = tmp_path / "short.bin"
    path.write_bytes(np.array([20240520, 1, 10] + [0] * 253, "<i4").tobytes() + b"\0" * 4)
    with pytest.raises(ValueError, match="header says 10 tokens"):
        read_shard(path)
