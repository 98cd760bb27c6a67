"""The shard reader: manifest checks, windows over the train stream (across shard boundaries), document
alignment, disjoint rank streams, exact positions, and uint32 token sets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.trainer_data import random_documents, write_token_set
from tokenmill.tokenizer.shards import UINT32, write_shard
from tokenmill.trainer.data import RankBatches, WindowStream, open_token_set

VOCAB, EOT, SEQ = 500, 499, 16


@pytest.fixture()
def docs() -> list[np.ndarray]:
    return random_documents(60, VOCAB, EOT, seed=1, lengths=(2, 60))


@pytest.fixture()
def token_set(tmp_path: Path, docs: list[np.ndarray]):
    return open_token_set(
        write_token_set(tmp_path / "set", docs[10:], docs[:10], VOCAB, EOT, shard_tokens=300)
    )


def _windows(stream: WindowStream) -> list[np.ndarray]:
    found = []
    while True:
        try:
            found.append(stream.next_window())
        except StopIteration:
            return found


def test_manifest_gives_dtype_eot_vocab_and_shards_in_order(token_set, docs) -> None:
    assert (token_set.vocab_size, token_set.eot_id, token_set.shard_format.dtype.name) == (
        VOCAB,
        EOT,
        "uint16",
    )
    assert [path.name for path in token_set.train][:2] == ["train_000001.bin", "train_000002.bin"]
    assert token_set.val.name == "val_000000.bin"
    assert len(token_set.train) == -(-sum(len(d) for d in docs[10:]) // 300)


def test_unaligned_windows_tile_the_concatenated_stream_across_shards(token_set, docs) -> None:
    stream = np.concatenate(docs[10:])
    windows = _windows(WindowStream(token_set.train, SEQ, align=False, wrap=False))
    assert len(windows) == (len(stream) - 1) // SEQ
    for k, window in enumerate(windows):
        np.testing.assert_array_equal(window, stream[k * SEQ : k * SEQ + SEQ + 1])


def test_aligned_windows_known_answer(tmp_path: Path) -> None:
    # Documents of 10, 3, 200 and 5 tokens start at 0, 10, 13, 213 (218 in all); windows of 8 + 1.
    docs = [np.concatenate([[EOT], np.arange(1, n)]) for n in (10, 3, 200, 5)]
    root = write_token_set(tmp_path / "set", docs, docs[:1], VOCAB, EOT, shard_tokens=50)
    windows = _windows(WindowStream(open_token_set(root).train, 8, align=True, wrap=False))
    # 0; then the cursor is at 8 and a document starts within 8 tokens (at 10): skip to it. From 18
    # the 200-token document is continued window by window (18, 26, ..., 202); its last 3 tokens before
    # the document at 213 are skipped, and 213 has no room for a full window.
    expected = [0, 10] + [18 + 8 * k for k in range(24)]
    full = np.concatenate(docs)
    assert len(windows) == len(expected)
    for start, window in zip(expected, windows, strict=True):
        np.testing.assert_array_equal(window, full[start : start + 9])


def test_aligned_windows_start_at_documents_or_lie_inside_one(token_set, docs) -> None:
    full = np.concatenate(docs[10:])
    doc_starts = set(np.cumsum([0] + [len(d) for d in docs[10:-1]]).tolist())
    stream = WindowStream(token_set.train, SEQ, align=True, wrap=False)
    previous_end = 0
    at_documents = 0
    while True:
        cursor = stream.cursor
        try:
            window = stream.next_window()
        except StopIteration:
            break
        start = stream.cursor - SEQ
        np.testing.assert_array_equal(window, full[start : start + SEQ + 1])
        assert start >= previous_end == cursor
        if start in doc_starts:
            at_documents += 1
            assert not doc_starts & set(range(cursor, start))  # the first document after the cursor
        else:
            assert start == cursor and not doc_starts & set(range(start, start + SEQ))
        previous_end = start + SEQ
    assert at_documents > 20


def test_ranks_get_disjoint_windows_whose_union_is_the_single_stream(token_set) -> None:
    def batches(rank: int, world: int, micro: int, count: int) -> list[np.ndarray]:
        loader = RankBatches(WindowStream(token_set.train, SEQ, True, True), micro, rank, world)
        return [
            np.concatenate([x, y[:, -1:]], axis=1) for x, y in (loader.next_batch() for _ in range(count))
        ]

    single = np.concatenate(batches(0, 1, micro=4, count=6))
    rank0, rank1 = np.concatenate(batches(0, 2, 2, 6)), np.concatenate(batches(1, 2, 2, 6))
    np.testing.assert_array_equal(rank0, single[0::2])
    np.testing.assert_array_equal(rank1, single[1::2])


def test_state_resumes_at_the_exact_window_and_epoch(token_set) -> None:
    first = WindowStream(token_set.train, SEQ, align=True, wrap=True)
    count = len(_windows(WindowStream(token_set.train, SEQ, align=True, wrap=False)))
    for _ in range(count + 3):  # into the second epoch
        first.next_window()
    state = first.state()
    assert state["epoch"] == 1
    second = WindowStream(token_set.train, SEQ, align=True, wrap=True)
    second.load_state(json.loads(json.dumps(state)))
    for _ in range(count):
        np.testing.assert_array_equal(first.next_window(), second.next_window())


def test_uint32_token_set_reads_ids_beyond_uint16(tmp_path: Path) -> None:
    vocab, eot = 200_019, 199_999
    docs = [np.array([eot, 70_000 + i, 65_536, 199_998, 3]) for i in range(40)]
    token_set = open_token_set(write_token_set(tmp_path / "set", docs[4:], docs[:4], vocab, eot, 64))
    assert token_set.shard_format == UINT32
    windows = _windows(WindowStream(token_set.train, 8, align=False, wrap=False))
    np.testing.assert_array_equal(windows[0], np.concatenate(docs[4:])[:9])


def _edit_manifest(root: Path, **changes) -> None:
    manifest = json.loads((root / "manifest.json").read_text())
    manifest.update(changes)
    (root / "manifest.json").write_text(json.dumps(manifest))


def test_dtype_disagreeing_with_a_shard_magic_is_an_error(token_set) -> None:
    _edit_manifest(token_set.root, dtype="uint32", magic=UINT32.magic)
    with pytest.raises(ValueError, match="disagrees with the manifest's dtype uint32"):
        open_token_set(token_set.root)


def test_dtype_disagreeing_with_the_manifest_magic_is_an_error(token_set) -> None:
    _edit_manifest(token_set.root, magic=UINT32.magic)
    with pytest.raises(ValueError, match="dtype uint16 has magic 20240520, not 20240801"):
        open_token_set(token_set.root)


def test_missing_shard_and_header_count_mismatch_are_errors(token_set) -> None:
    (token_set.root / "train_000002.idx").unlink()
    with pytest.raises(FileNotFoundError, match="train_000002.idx, which is missing"):
        open_token_set(token_set.root)
    with open(token_set.root / "train_000002.bin", "wb") as handle:
        write_shard(handle, np.zeros(3), token_set.shard_format)
    np.zeros(0, dtype="<u8").tofile(token_set.root / "train_000002.idx")
    with pytest.raises(ValueError, match="3 tokens in the header, 300 in the manifest"):
        open_token_set(token_set.root)


def test_missing_manifest_names_the_expected_layout(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"ROOT/tokens/<tokenizer>"):
        open_token_set(tmp_path)
