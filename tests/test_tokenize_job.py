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
from tokenmill.tokenizer.upsample import FINEWEB2

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


# ---- rehydration (--upsample-by) ----------------------------------------------------------------------

# sha256 of val_000000 and train_000001..4, .bin then .idx, as gpt2_run's settings wrote them before
# --upsample-by existed: without the option the shards keep their bytes.
SHARDS_BEFORE_UPSAMPLING = "c08eeef014f8ee140b1ebaf59d3c46da9da0eabfd0e4945c4eb08a463bc5b22a"


def _stream_ids(shards: Path) -> list[str]:
    """The ids of the documents in stream order: piece 0 of each, shard by shard."""
    manifest = json.loads((shards / "manifest.json").read_text())
    ids = []
    for shard in manifest["shards"]:
        table = pq.read_table(shards / shard["parquet"]).sort_by("offset").to_pydict()
        ids += [doc_id for doc_id, piece in zip(table["id"], table["piece"], strict=True) if piece == 0]
    return ids


def _shard_bytes_sha256(shards: Path) -> str:
    """sha256 of every .bin in shard order, then every .idx."""
    manifest = json.loads((shards / "manifest.json").read_text())
    names = [shard[kind] for kind in ("bin", "idx") for shard in manifest["shards"]]
    return hashlib.sha256(b"".join((shards / name).read_bytes() for name in names)).hexdigest()


def test_without_upsampling_the_shards_keep_their_bytes(gpt2_run):
    assert _shard_bytes_sha256(gpt2_run) == SHARDS_BEFORE_UPSAMPLING


def _expected_stream(spark, copies: dict[str, int], seed: int) -> list[str]:
    """The documented order: copy 0 by xxhash64(seed, id), copy k > 0 by xxhash64(seed, id, k)."""
    from pyspark.sql import functions as F

    rows = [(doc_id, copy) for doc_id, count in copies.items() for copy in range(count)]
    frame = spark.createDataFrame(rows, "id string, copy int")
    key = F.when(F.col("copy") == 0, F.xxhash64(F.lit(seed), "id")).otherwise(
        F.xxhash64(F.lit(seed), "id", "copy")
    )
    return [
        row["id"]
        for row in frame.select("id", key.alias("key"), "copy").orderBy("key", "id", "copy").collect()
    ]


def test_dedup_cluster_sizes_repeat_documents_by_fineweb2_table(spark, tmp_path):
    """Long speeches, five of them copied verbatim under new ids: dedup finds clusters of 2, 3, 4, 6
    and 120, keeps the smallest id of each, and tokenize repeats it 2, 3, 3, 5 and 8 times."""
    texts = [doc["text"] for doc in _speeches() if len(doc["text"]) > 300][:40]
    cluster_sizes = {0: 2, 1: 3, 2: 4, 3: 6, 4: 120}
    docs = [{"id": f"doc-{i:03d}", "text": text} for i, text in enumerate(texts)]
    docs += [
        {"id": f"doc-{i:03d}-copy-{k:03d}", "text": texts[i]}
        for i, size in cluster_sizes.items()
        for k in range(1, size)
    ]
    source = _write(docs, tmp_path / "docs", files=2)
    root = tmp_path / "run"
    assert cli.main(["dedup", "-o", str(root), "--input", str(source), "--master", "local[2]"]) == 0
    args = ("--encoding", "gpt2", "--val-tokens", "3000", "--seed", "3", "--upsample-by", "cluster_size")
    shards = _tokenize(root, root / "final", *args) / "tokens" / "gpt2"

    expected = {doc["id"]: 1 for doc in docs[: len(texts)]}
    expected.update({"doc-000": 2, "doc-001": 3, "doc-002": 3, "doc-003": 5, "doc-004": 8})
    stream = _stream_ids(shards)
    assert {doc_id: stream.count(doc_id) for doc_id in set(stream)} == expected
    assert stream == _expected_stream(spark, expected, seed=3)  # copies shuffled apart by their own keys

    manifest = json.loads((shards / "manifest.json").read_text())
    gpt2 = load_encoding("gpt2")
    final = pq.read_table(root / "final").to_pydict()
    lengths = {
        doc_id: len(gpt2.encode_ordinary(text)) + 1
        for doc_id, text in zip(final["id"], final["text"], strict=True)
    }
    counts = manifest["counts"]
    assert counts["upsample"] == {
        "documents": 40,
        "copies": 56,
        "tokens_added": sum((copies - 1) * lengths[doc_id] for doc_id, copies in expected.items()),
        "unknown_cluster_size": 0,
    }
    assert (counts["documents_in"], counts["documents"], counts["skipped"]) == (40, 56, {"empty_text": 0})
    assert counts["tokens"] == sum(copies * lengths[doc_id] for doc_id, copies in expected.items())
    assert manifest["settings"]["upsample"] == {
        "by": "cluster_size",
        "table": [[1, 1], [2, 2], [3, 3], [5, 5], [100, 8], [1000, 1]],
    }
    stats = json.loads((root / "stats" / "tokenize.json").read_text())
    assert stats["counts"]["upsample"] == counts["upsample"]


def _sized_speeches() -> list[dict]:
    """The speeches with FineWeb-2's column: sizes 1 to 149 from a seeded generator, none for some."""
    sizes = np.random.default_rng(5).integers(1, 150, len(_speeches())).tolist()
    return [
        {**doc, "minhash_cluster_size": None if index % 50 == 7 else size}
        for index, (doc, size) in enumerate(zip(_speeches(), sizes, strict=True))
    ]


def test_upsampled_shards_are_the_same_bytes_whatever_the_partitioning(spark, tmp_path):
    docs = _sized_speeches()
    args = ("--encoding", "gpt2", "--shard-tokens", "200000", "--seed", "11", "--upsample-by")
    three = _tokenize(
        tmp_path / "a", _write(docs, tmp_path / "three", files=3), *args, "minhash_cluster_size"
    )
    one = _tokenize(
        tmp_path / "b", _write(docs[::-1], tmp_path / "one", files=1), *args, "minhash_cluster_size"
    )
    first, second = three / "tokens" / "gpt2", one / "tokens" / "gpt2"
    assert _shard_bytes_sha256(first) == _shard_bytes_sha256(second)
    counts = json.loads((first / "manifest.json").read_text())["counts"]
    unknown = sum(1 for doc in docs if doc["text"] and doc["minhash_cluster_size"] is None)
    assert counts["upsample"]["unknown_cluster_size"] == unknown > 0
    sizes = [doc["minhash_cluster_size"] or 0 for doc in docs if doc["text"]]
    assert counts["upsample"]["copies"] == int(FINEWEB2.copies(np.array(sizes)).sum()) > len(sizes)


def test_a_table_of_single_copies_changes_no_byte(gpt2_run, spark, tmp_path):
    table = tmp_path / "ones.toml"
    table.write_text("[copies]\n1 = 1\n", encoding="utf-8")
    source = _write(_sized_speeches(), tmp_path / "docs", files=2)
    args = ("--encoding", "gpt2", "--shard-tokens", "100000", "--val-tokens", "20000", "--seed", "7")
    upsample = ("--upsample-by", "minhash_cluster_size", "--upsample-table", str(table))
    shards = _tokenize(tmp_path / "r", source, *args, *upsample) / "tokens" / "gpt2"
    assert _shard_bytes_sha256(shards) == _shard_bytes_sha256(gpt2_run)


def test_bad_upsampling_options_are_clear_errors(spark, tmp_path, capsys):
    docs = _write(_speeches()[:20], tmp_path / "docs")

    def error(*extra: str) -> str:
        args = ["tokenize", "-o", str(tmp_path / "r"), "--input", str(docs), "--encoding", "gpt2", *extra]
        assert cli.main([*args, "--master", "local[2]"]) == cli.EXIT_USER_ERROR
        return capsys.readouterr().err

    assert "give a column of cluster sizes" in error("--upsample-by", "score")
    assert "give both or neither" in error("--upsample-table", str(tmp_path / "t.toml"))
    assert "cannot read it" in error(
        "--upsample-by", "cluster_size", "--upsample-table", str(tmp_path / "t.toml")
    )
    assert "has no column minhash_cluster_size" in error("--upsample-by", "minhash_cluster_size")
    assert "run `tokenmill dedup` first" in error("--upsample-by", "cluster_size")
