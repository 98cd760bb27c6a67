"""Sampling on a known distribution: greedy, temperature, top-k, and top-p (1 = plain sampling, small
= the nucleus only)."""

from __future__ import annotations

import pytest
import torch

from tokenmill.trainer.sample import next_token_probs, pick

PROBS = torch.tensor([[0.5, 0.25, 0.15, 0.07, 0.03]], dtype=torch.float64)
LOGITS = PROBS.log()


def _draws(count: int, **options) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1234)
    return torch.cat([pick(LOGITS, generator=generator, **options) for _ in range(count)]).flatten()


def _frequencies(draws: torch.Tensor) -> torch.Tensor:
    return torch.bincount(draws, minlength=5).double() / len(draws)


def test_plain_probabilities_are_the_softmax() -> None:
    torch.testing.assert_close(next_token_probs(LOGITS).double(), PROBS)


@pytest.mark.parametrize(
    ("top_p", "nucleus"),
    [
        (0.4, [1.0, 0, 0, 0, 0]),
        (0.7, [0.5, 0.25, 0, 0, 0]),
        (0.8, [0.5, 0.25, 0.15, 0, 0]),
        (0.95, [0.5, 0.25, 0.15, 0.07, 0]),
    ],
)
def test_top_p_keeps_the_smallest_set_reaching_p(top_p: float, nucleus: list[float]) -> None:
    expected = torch.tensor([nucleus], dtype=torch.float64)
    torch.testing.assert_close(next_token_probs(LOGITS, top_p=top_p).double(), expected / expected.sum())


def test_top_p_one_is_plain_sampling_draw_for_draw() -> None:
    plain = _draws(4000, temperature=1.0, top_k=None, top_p=None)
    assert torch.equal(_draws(4000, temperature=1.0, top_k=None, top_p=1.0), plain)
    generator = torch.Generator().manual_seed(1234)
    direct = torch.cat([torch.multinomial(PROBS.float(), 1, generator=generator) for _ in range(4000)])
    assert torch.equal(direct.flatten(), plain)
    torch.testing.assert_close(_frequencies(plain), PROBS[0], atol=0.02, rtol=0)


def test_small_top_p_samples_only_the_nucleus_in_proportion() -> None:
    draws = _draws(4000, temperature=1.0, top_k=None, top_p=0.7)
    assert set(draws.tolist()) == {0, 1}
    torch.testing.assert_close(
        _frequencies(draws)[:2], torch.tensor([2 / 3, 1 / 3]).double(), atol=0.02, rtol=0
    )


def test_top_k_and_temperature() -> None:
    expected = torch.tensor([[0.5, 0.25, 0, 0, 0]], dtype=torch.float64) / 0.75
    torch.testing.assert_close(next_token_probs(LOGITS, top_k=2).double(), expected)
    squared = PROBS**2 / (PROBS**2).sum()  # temperature 1/2 squares the probabilities
    torch.testing.assert_close(next_token_probs(LOGITS, temperature=0.5).double(), squared)
    both = next_token_probs(LOGITS, temperature=0.5, top_k=3, top_p=0.8).double()
    torch.testing.assert_close(both, torch.tensor([[0.8, 0.2, 0, 0, 0]], dtype=torch.float64))


def test_temperature_zero_is_greedy() -> None:
    logits = torch.tensor([[0.1, 3.0, 2.9], [5.0, -1.0, 4.0]])
    assert pick(logits, 0, None, None, None).flatten().tolist() == [1, 0]
    with pytest.raises(ValueError, match="greedy"):
        next_token_probs(logits, temperature=0)
