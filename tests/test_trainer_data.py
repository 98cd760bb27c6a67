"""The shard reader: manifest checks, documents across shard boundaries, packed windows with masked
targets, disjoint rank streams, exact positions, and uint32 token sets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.trainer_data import position_documents, random_documents, write_token_set
from tokenmill.tokenizer.shards import UINT32, write_shard
from tokenmill.trainer.data import MaskedDocuments, PackedWindows, RankBatches, ShardDocuments, open_token_set

VOCAB, EOT, SEQ = 500, 499, 16


@pytest.fixture()
def docs() -> list[np.ndarray]:
    return random_documents(60, VOCAB, EOT, seed=1, lengths=(2, 60))


@pytest.fixture()
def token_set(tmp_path: Path, docs: list[np.ndarray]):
    return open_token_set(
        write_token_set(tmp_path / "set", docs[10:], docs[:10], VOCAB, EOT, shard_tokens=300)
    )


def _packed(token_set, wrap: bool = True) -> PackedWindows:
    return PackedWindows(ShardDocuments(token_set.train), SEQ, split=True, wrap=wrap, lookahead=8)


def test_manifest_gives_dtype_eot_vocab_and_shards_in_order(token_set, docs) -> None:
    assert (token_set.vocab_size, token_set.eot_id, token_set.shard_format.dtype.name) == (
        VOCAB,
        EOT,
        "uint16",
    )
    assert [path.name for path in token_set.train][:2] == ["train_000001.bin", "train_000002.bin"]
    assert token_set.val.name == "val_000000.bin"
    assert len(token_set.train) == -(-sum(len(d) for d in docs[10:]) // 300)


def test_shard_documents_run_across_shard_boundaries(token_set, docs) -> None:
    documents = ShardDocuments(token_set.train)
    np.testing.assert_array_equal(documents.lengths, [len(doc) for doc in docs[10:]])
    starts = np.cumsum([0] + [len(doc) for doc in docs[10:]])
    assert any(start // 300 != (end - 1) // 300 for start, end in zip(starts[:-1], starts[1:], strict=True))
    for index, doc in enumerate(docs[10:]):
        np.testing.assert_array_equal(documents.tokens(index, 0, len(doc)), doc)
        np.testing.assert_array_equal(documents.tokens(index, 1, len(doc) - 1), doc[1:-1])
        assert documents.targets_mask(index, 1, len(doc)).all()


def test_a_token_stream_that_does_not_open_with_a_document_is_an_error(token_set) -> None:
    np.array([3], dtype="<u8").tofile(token_set.root / "train_000001.idx")
    with pytest.raises(ValueError, match="train_000001.bin: the token stream does not open with a document"):
        ShardDocuments(token_set.train)


@pytest.mark.parametrize("split", [False, True])
def test_masked_documents_give_minus_one_targets_exactly_where_the_mask_is_false(split: bool) -> None:
    rng = np.random.default_rng(4)
    documents = position_documents(rng.integers(3, SEQ + 2, size=80), eot=0)  # tokens >= 1; 0: padding
    masks = [np.concatenate([[False], rng.random(len(doc) - 1) < 0.5]) for doc in documents]
    trained_by_token = dict(
        zip(np.concatenate(documents).tolist(), np.concatenate(masks).tolist(), strict=True)
    )
    trained_by_token[0] = False  # padding
    windows = PackedWindows(
        MaskedDocuments(list(zip(documents, masks, strict=True))), SEQ, split=split, wrap=False, lookahead=4
    )
    targets_found = []
    while True:
        try:
            inputs, targets = windows.next_window()
        except StopIteration:
            break
        expected = [trained_by_token[token] for token in inputs[1:].tolist()]
        np.testing.assert_array_equal(targets[:-1] != -1, expected)
        np.testing.assert_array_equal(targets[:-1][expected], inputs[1:][expected])
        targets_found.append(targets[targets != -1])
    trained = np.sort(np.concatenate(targets_found))
    np.testing.assert_array_equal(
        trained, np.sort(np.concatenate([d[m] for d, m in zip(documents, masks, strict=True)]))
    )
    with pytest.raises(ValueError, match="document 1 has 3 tokens but a mask of 2"):
        MaskedDocuments([(np.ones(2), np.ones(2, bool)), (np.ones(3), np.ones(2, bool))])


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_ranks_get_disjoint_windows_whose_union_is_the_single_stream(token_set, world_size: int) -> None:
    def windows(rank: int, world: int, steps: int) -> list[np.ndarray]:
        loader = RankBatches(_packed(token_set), 6 // world, rank, world)
        batches = [loader.next_batch() for _ in range(steps)]
        assert all(x.dtype == y.dtype == torch.int64 and x.shape == (6 // world, SEQ) for x, y in batches)
        return [np.concatenate([x, y]) for batch in batches for x, y in zip(*batch, strict=True)]

    single = windows(0, 1, steps=25)  # 150 windows: past the end of the first epoch
    assert len(list(_packed(token_set, wrap=False).packer)) < len(single)
    ranks = [windows(rank, world_size, steps=25) for rank in range(world_size)]
    for rank, found in enumerate(ranks):
        assert len(found) == len(single) // world_size
        for mine, expected in zip(found, single[rank::world_size], strict=True):
            np.testing.assert_array_equal(mine, expected)


def test_state_resumes_at_the_exact_window_across_the_wrap_and_rewind_restarts(token_set) -> None:
    first = _packed(token_set)
    fresh = [first.next_window() for _ in range(5)]
    while first.state()["epoch"] == 0:
        first.next_window()
    state = first.state()
    second = _packed(token_set)
    second.load_state(json.loads(json.dumps(state)))
    for _ in range(120):
        for mine, expected in zip(second.next_window(), first.next_window(), strict=True):
            np.testing.assert_array_equal(mine, expected)
    second.rewind()
    for window in fresh:
        for mine, expected in zip(second.next_window(), window, strict=True):
            np.testing.assert_array_equal(mine, expected)


def test_uint32_token_set_reads_ids_beyond_uint16(tmp_path: Path) -> None:
    vocab, eot = 200_019, 199_999
    docs = [np.array([eot, 70_000 + i, 65_536, 199_998, 3]) for i in range(40)]
    token_set = open_token_set(write_token_set(tmp_path / "set", docs[4:], docs[:4], vocab, eot, 64))
    assert token_set.shard_format == UINT32
    windows = PackedWindows(ShardDocuments(token_set.train), 8, split=True, wrap=False, lookahead=4)
    inputs, targets = windows.next_window()
    # 9 tokens: document 4 whole (5), then the first 4 of document 5, whose rest opens the next window.
    window = np.concatenate([docs[4], docs[5][:4]])
    np.testing.assert_array_equal(inputs, window[:-1])
    np.testing.assert_array_equal(targets, window[1:])
    np.testing.assert_array_equal(windows.next_window()[0][:2], docs[5][3:])


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
