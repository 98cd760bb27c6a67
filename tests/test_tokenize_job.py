"""The tokenize and train-tokenizer jobs on local[2], read back by an independent numpy reader: header,
dtype, counts, EOT positions, document index, Parquet twins, manifest hashes; byte-identical output for
the same seed whatever the partitioning; uint32 shards for big vocabularies; merges equal rustbpe's."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import rustbpe

from tests.conftest import DATA
from tokenmill.jobs import cli
from tokenmill.tokenizer import load_encoding
from tokenmill.tokenizer.bpe import GPT4_PATTERN

SHAKESPEARE = (DATA / "text" / "tinyshakespeare_input.txt").read_text(encoding="utf-8")


def _speeches() -> list[dict]:
    """tiny shakespeare as documents: one per speech (blank-line separated), plus an empty one."""
    texts = [text for text in SHAKESPEARE.split("\n\n") if text.strip()]
    return [{"id": f"speech-{i:05d}", "text": text} for i, text in enumerate(texts)] + [
        {"id": "empty", "text": ""}
    ]


def _write(docs: list[dict], path: Path, files: int = 1) -> Path:
    path.mkdir(parents=True)
    for index in range(files):
        pq.write_table(pa.Table.from_pylist(docs[index::files]), path / f"part-{index}.parquet")
    return path


def _tokenize(root: Path, source: Path, *extra: str) -> Path:
    args = ["tokenize", "-o", str(root), "--input", str(source), "--master", "local[2]", *extra]
    assert cli.main(args) == 0
    return root


def _read_bin(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """An independent reader of llm.c's format: 256 int32, then uint16 or uint32 by magic."""
    header = np.fromfile(path, dtype="<i4", count=256)
    dtype = {20240520: "<u2", 20240801: "<u4"}[int(header[0])]
    assert int(header[1]) == {20240520: 1, 20240801: 7}[int(header[0])]
    tokens = np.fromfile(path, dtype=dtype, offset=1024)
    assert len(tokens) == header[2]
    return header, tokens


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return _write(_speeches(), tmp_path_factory.mktemp("speeches") / "docs", files=3)


@pytest.fixture(scope="module")
def gpt2_run(spark, corpus, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tok") / "run"
    args = ("--encoding", "gpt2", "--shard-tokens", "100000", "--val-tokens", "20000", "--seed", "7")
    return _tokenize(root, corpus, *args) / "tokens" / "gpt2"


def test_manifest_describes_what_the_shards_hold(gpt2_run):
    manifest = json.loads((gpt2_run / "manifest.json").read_text())
    assert manifest["tokenizer"]["name"] == "gpt2" and manifest["tokenizer"]["source"] == "gpt2"
    assert manifest["tokenizer"]["rank_file_sha256"].startswith("306cd27f")
    assert (manifest["vocab_size"], manifest["dtype"], manifest["eot_id"]) == (50257, "uint16", 50256)
    assert (manifest["magic"], manifest["version"]) == (20240520, 1)
    counts = manifest["counts"]
    speeches = _speeches()
    assert counts["documents_in"] == len(speeches) and counts["skipped"] == {"empty_text": 1}
    assert counts["documents"] == len(speeches) - 1 == counts["val_documents"] + counts["train_documents"]
    gpt2 = load_encoding("gpt2")
    assert counts["tokens"] == sum(
        len(gpt2.encode_ordinary(doc["text"])) + 1 for doc in speeches if doc["text"]
    )
    shards = manifest["shards"]
    assert [shard["bin"] for shard in shards[:2]] == ["val_000000.bin", "train_000001.bin"]
    assert [shard["tokens"] for shard in shards[1:-1]] == [100_000] * (len(shards) - 2)
    assert 20_000 <= counts["val_tokens"] == shards[0]["tokens"] < 20_000 + 2_000
    for shard in shards:
        for kind in ("bin", "idx", "parquet"):
            assert _sha256(gpt2_run / shard[kind]) == shard["sha256"][kind]


def test_shards_read_back_with_eot_at_every_indexed_document_start(gpt2_run):
    manifest = json.loads((gpt2_run / "manifest.json").read_text())
    starts_seen = 0
    for shard in manifest["shards"]:
        header, tokens = _read_bin(gpt2_run / shard["bin"])
        assert header[2] == shard["tokens"] and not header[3:].any()
        index = np.fromfile(gpt2_run / shard["idx"], dtype="<u8")
        # encode_ordinary never yields 50256, so EOT positions are exactly the document starts
        assert np.array_equal(np.flatnonzero(tokens == 50256), index)
        assert len(index) == shard["documents"]
        starts_seen += len(index)
    assert starts_seen == manifest["counts"]["documents"]


def test_every_document_arrives_once_whole_and_validation_is_disjoint(gpt2_run):
    manifest = json.loads((gpt2_run / "manifest.json").read_text())
    gpt2 = load_encoding("gpt2")
    _, val = _read_bin(gpt2_run / "val_000000.bin")
    train = np.concatenate([_read_bin(gpt2_run / s["bin"])[1] for s in manifest["shards"][1:]])

    def documents(stream: np.ndarray) -> list[str]:
        assert stream[0] == 50256
        bounds = [*np.flatnonzero(stream == 50256), len(stream)]
        return [gpt2.decode(stream[a + 1 : b].tolist()) for a, b in zip(bounds, bounds[1:], strict=False)]

    val_docs, train_docs = documents(val), documents(train)
    expected = sorted(doc["text"] for doc in _speeches() if doc["text"])
    assert sorted(val_docs + train_docs) == expected
    assert len(val_docs) == manifest["counts"]["val_documents"]
    order = [doc["text"] for doc in _speeches() if doc["text"]]
    assert train_docs[:50] != order[:50] and val_docs[:20] != order[:20]  # shuffled


def test_parquet_shards_hold_the_same_tokens_as_the_bin_shards(gpt2_run):
    manifest = json.loads((gpt2_run / "manifest.json").read_text())
    for shard in manifest["shards"]:
        table = pq.read_table(gpt2_run / shard["parquet"])
        assert table.schema.field("tokens").type == pa.list_(pa.uint16())
        flat = np.concatenate(table.column("tokens").to_numpy(zero_copy_only=False))
        assert np.array_equal(flat, _read_bin(gpt2_run / shard["bin"])[1])
        pieces = table.to_pydict()
        starts = [o for o, p in zip(pieces["offset"], pieces["piece"], strict=True) if p == 0]
        assert starts == np.fromfile(gpt2_run / shard["idx"], dtype="<u8").tolist()


def test_same_seed_gives_identical_bytes_whatever_the_partitioning(gpt2_run, spark, tmp_path):
    one_file = _write(_speeches()[::-1], tmp_path / "one-file", files=1)
    args = ("--encoding", "gpt2", "--shard-tokens", "100000", "--val-tokens", "20000", "--seed", "7")
    again = _tokenize(tmp_path / "again", one_file, *args) / "tokens" / "gpt2"
    names = sorted(path.name for path in gpt2_run.iterdir() if path.suffix in (".bin", ".idx", ".parquet"))
    assert names == sorted(path.name for path in again.iterdir() if path.suffix != ".json")
    for name in names:
        assert _sha256(gpt2_run / name) == _sha256(again / name), name

    other = _tokenize(tmp_path / "other", one_file, *args[:-1], "8") / "tokens" / "gpt2"
    assert _sha256(other / "train_000001.bin") != _sha256(gpt2_run / "train_000001.bin")


def test_rerun_with_the_same_settings_is_skipped(gpt2_run, corpus, capsys):
    before = {path.name: path.stat().st_mtime_ns for path in gpt2_run.iterdir()}
    args = ("--encoding", "gpt2", "--shard-tokens", "100000", "--val-tokens", "20000", "--seed", "7")
    _tokenize(gpt2_run.parent.parent, corpus, *args)
    assert "nothing to do" in capsys.readouterr().out
    assert before == {path.name: path.stat().st_mtime_ns for path in gpt2_run.iterdir()}


def test_rerun_with_other_settings_leaves_no_stale_shards(spark, tmp_path):
    docs = _write(_speeches()[:600], tmp_path / "docs")
    shards = (
        _tokenize(tmp_path / "r", docs, "--encoding", "gpt2", "--shard-tokens", "5000") / "tokens" / "gpt2"
    )
    many = len(list(shards.glob("*.bin")))
    _tokenize(tmp_path / "r", docs, "--encoding", "gpt2", "--shard-tokens", "20000")
    manifest = json.loads((shards / "manifest.json").read_text())
    assert len(list(shards.glob("*.bin"))) == len(manifest["shards"]) < many


def test_big_vocabularies_get_uint32_shards(spark, tmp_path):
    docs = _write(_speeches()[:300], tmp_path / "docs")
    shards = _tokenize(tmp_path / "r", docs, "--encoding", "o200k_base", "--val-tokens", "1000") / "tokens"
    manifest = json.loads((shards / "o200k_base" / "manifest.json").read_text())
    assert (manifest["dtype"], manifest["magic"], manifest["version"]) == ("uint32", 20240801, 7)
    header, tokens = _read_bin(shards / "o200k_base" / "train_000001.bin")
    assert tokens.dtype == np.dtype("<u4") and tokens.max() > 65_535  # ids uint16 would have garbled
    assert (
        np.flatnonzero(tokens == 199_999).tolist()
        == np.fromfile(shards / "o200k_base" / "train_000001.idx", dtype="<u8").tolist()
    )


def test_spark_trained_tokenizer_equals_rustbpe_and_tokenizes(spark, tmp_path):
    docs = _speeches()[:2500]
    source = _write(docs, tmp_path / "docs", files=2)
    root = tmp_path / "run"
    args = ["train-tokenizer", "-o", str(root), "--vocab-size", "1500", "--input", str(source)]
    assert cli.main([*args, "--master", "local[2]"]) == 0
    directory = root / "tokenizer" / "bpe-1500"
    reference = rustbpe.Tokenizer()
    reference.train_from_iterator(iter(doc["text"] for doc in docs), 1499, pattern=GPT4_PATTERN)
    trained = load_encoding(str(directory))
    assert trained._mergeable_ranks == dict(reference.get_mergeable_ranks())
    assert trained.eot_token == 1499 and trained.n_vocab == 1500

    _tokenize(root, source, "--encoding", str(directory), "--val-tokens", "2000")
    manifest = json.loads((root / "tokens" / "bpe-1500" / "manifest.json").read_text())
    assert (manifest["eot_id"], manifest["vocab_size"], manifest["dtype"]) == (1499, 1500, "uint16")
    assert manifest["tokenizer"]["source"] == str(directory)
    _, tokens = _read_bin(root / "tokens" / "bpe-1500" / "train_000001.bin")
    assert tokens.max() < 1500
    assert load_encoding(manifest["tokenizer"]["source"]).decode(tokens[1:200].tolist()).strip()


def test_bad_arguments_are_clear_errors(spark, tmp_path, capsys):
    def error(source: Path, encoding: str) -> str:
        args = ["tokenize", "-o", str(tmp_path / "r"), "--input", str(source), "--encoding", encoding]
        assert cli.main([*args, "--master", "local[2]"]) == cli.EXIT_USER_ERROR
        return capsys.readouterr().err

    docs = _write([{"id": "a", "text": "x"}, {"id": "a", "text": "y"}], tmp_path / "dup")
    assert "not unique" in error(docs, "gpt2")
    assert "unknown encoding" in error(docs, "gpt-2")
    no_text = tmp_path / "no-text"
    no_text.mkdir()
    pq.write_table(pa.table({"id": ["a"]}), no_text / "part.parquet")
    assert "lacks the columns" in error(no_text, "gpt2")
