"""Best-fit packing: a known answer, every token of web-like documents trained once per epoch (read back
from the windows' tokens), whole conversations without splitting, exact continuation from a saved state
across the epoch wrap, and the bounded wait."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.trainer_data import position_documents, web_like_lengths, write_token_set
from tokenmill.trainer.data import MaskedDocuments, PackedWindows, ShardDocuments, open_token_set
from tokenmill.trainer.packing import BestFitPacker, coverage

EOT = 0  # position_documents' other tokens are >= 1, so 0 marks the EOT (and padding, never a target)


def _all_windows(windows: PackedWindows) -> tuple[list[np.ndarray], list[int]]:
    """Each window's seq_len + 1 tokens (padding as 0), checked against its inputs and targets, and
    its count of -1 targets (padding, as every token here is trained)."""
    found, padding = [], []
    while True:
        try:
            inputs, targets = windows.next_window()
        except StopIteration:
            return found, padding
        padded = targets == -1
        np.testing.assert_array_equal(inputs[1:][~padded[:-1]], targets[:-1][~padded[:-1]])
        assert not inputs[1:][padded[:-1]].any()
        found.append(np.append(inputs, max(targets[-1], 0)))
        padding.append(int(padded.sum()))


def test_known_answer() -> None:
    # Width 6, lookahead 2. Window 1: documents 0 (3 tokens) and 1 (5) wait; the longest that fits is 1,
    # then 1 token is left and 0 does not fit: 0's EOT closes the window and 0 is carried from its start.
    # Window 2: 0 whole, then 2 (2 tokens); 1 token left: 3's EOT, and 3 (9 tokens) is carried.
    # Windows 3 and 4: 3[0:6], then 3[5:9] (one token shared: 3[5] is a target in window 3 only).
    packer = BestFitPacker([3, 5, 2, 9], 6, split=True, wrap=False, lookahead=2)
    assert list(packer) == [
        [(1, 0, 5), (0, 0, 1)],
        [(0, 0, 3), (2, 0, 2), (3, 0, 1)],
        [(3, 0, 6)],
        [(3, 5, 9)],
    ]


@pytest.mark.parametrize("source", ["in memory", "token set"])
@pytest.mark.parametrize("seq_len", [64, 1024, 2048])
def test_every_token_of_web_like_documents_is_a_target_exactly_once(
    seq_len: int, source: str, tmp_path: Path
) -> None:
    lengths = web_like_lengths(400, seed=seq_len)
    assert (lengths > seq_len + 1).mean() > 0.05  # some documents far longer than a window
    documents = position_documents(lengths, EOT)
    if source == "in memory":
        source_documents = MaskedDocuments([(doc, np.ones(len(doc), bool)) for doc in documents])
    else:  # shards of 50,000 tokens: documents and windows run across their boundaries
        root = write_token_set(tmp_path / "set", documents, documents[:3], 1 << 20, EOT, shard_tokens=50_000)
        source_documents = ShardDocuments(open_token_set(root).train)
    packed = PackedWindows(source_documents, seq_len, split=True, wrap=False, lookahead=64)
    windows, padding = _all_windows(packed)
    assert sum(padding[:-1]) == 0 and padding[-1] < seq_len  # only the last window is partial

    targets = np.concatenate([window[1:] for window in windows])
    trained = np.sort(targets[targets != EOT])
    np.testing.assert_array_equal(trained, np.concatenate([document[1:] for document in documents]))

    # Inside a window, tokens run on within one document or a new one starts, always at its EOT.
    firsts = {int(document[1]) for document in documents}
    lasts = {int(document[-1]) for document in documents}
    for window in windows:
        before, after = window[:-1], window[1:]
        inside = (before != EOT) & (after != EOT)
        np.testing.assert_array_equal(after[inside], before[inside] + 1)
        assert set(after[(before == EOT) & (after != EOT)].tolist()) <= firsts
        assert set(before[(before != EOT) & (after == EOT)].tolist()) <= lasts


def test_coverage_trains_everything_and_keeps_more_documents_whole_than_contiguous_packing() -> None:
    seq_len = 1024
    lengths = web_like_lengths(20_000, seed=0)
    report = coverage(lengths, seq_len + 1, lookahead=64)
    assert report.tokens_trained_fraction == 1.0
    assert report.padding_fraction < 1 / report.windows  # only the last window is partial
    starts = np.cumsum(lengths) - lengths
    window = starts // seq_len  # contiguous windows: [k T, k T + T + 1)
    contiguous_whole = np.mean(starts + lengths <= window * seq_len + seq_len + 1)
    assert report.documents_whole_fraction > contiguous_whole + 0.1


def test_without_splitting_documents_stay_whole_and_windows_are_padded() -> None:
    width = 1025
    lengths = web_like_lengths(600, seed=3)
    lengths = lengths[lengths <= width]
    pieces = [piece for window in BestFitPacker(lengths, width, split=False, wrap=False, lookahead=16)
              for piece in window]  # fmt: skip
    assert sorted(pieces) == [(doc, 0, int(length)) for doc, length in enumerate(lengths)]
    report = coverage(lengths, width, lookahead=16, split=False)
    assert report.tokens_trained_fraction == 1.0 and report.documents_whole_fraction == 1.0
    one_at_a_time = coverage(lengths, width, lookahead=1, split=False)  # each window closes at a misfit
    assert 0 < report.padding_fraction < one_at_a_time.padding_fraction / 2
    with pytest.raises(ValueError, match="document 1 has 12 tokens, more than a window of 10"):
        BestFitPacker([5, 12, 3], 10, split=False, wrap=False, lookahead=4)


def test_saved_states_continue_exactly_mid_epoch_and_across_the_wrap() -> None:
    lengths = web_like_lengths(60, seed=5)
    packer = BestFitPacker(lengths, 513, split=True, wrap=True, lookahead=8)
    states, windows = [], []
    for _ in range(3 * int(lengths.sum()) // 512):  # about three epochs
        states.append(json.dumps(packer.state()))
        windows.append(packer.next_window())
    chosen = {
        "carry mid-epoch": next(i for i, s in enumerate(states) if json.loads(s)["carry"] and i > 5),
        "buffer across the wrap": next(
            i for i, s in enumerate(states) if len({epoch for epoch, _ in json.loads(s)["buffer"]}) == 2
        ),
    }
    assert json.loads(states[chosen["buffer across the wrap"]])["epoch"] == 1
    for index in chosen.values():
        resumed = BestFitPacker(lengths, 513, split=True, wrap=True, lookahead=8)
        resumed.load_state(json.loads(states[index]))
        assert [resumed.next_window() for _ in range(len(windows) - index)] == windows[index:]
    with pytest.raises(ValueError, match="over 60 documents, not these 59"):
        BestFitPacker(lengths[:59], 513, split=True, wrap=True, lookahead=8).load_state(json.loads(states[9]))


def test_a_document_is_placed_before_the_one_lookahead_places_after_it() -> None:
    lookahead = 16
    lengths = web_like_lengths(3000, seed=7)
    first: dict[int, int] = {}
    pieces = (piece for window in BestFitPacker(lengths, 513, split=True, wrap=False, lookahead=lookahead)
              for piece in window)  # fmt: skip
    for order, (doc, _, _) in enumerate(pieces):
        first.setdefault(doc, order)
    order = np.array([first[doc] for doc in range(len(lengths))])
    assert (order[:-lookahead] < order[lookahead:]).all()
    assert (order[:-1] > order[1:]).any()  # best fit does reorder within the bound
