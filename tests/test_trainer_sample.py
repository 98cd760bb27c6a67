"""Sampling on a known distribution: greedy, temperature, top-k, and top-p (1 = plain sampling, small
= the nucleus only); stopping a batch at its stop token; loading a model without the optimizer."""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch

from tokenmill.trainer import checkpoint
from tokenmill.trainer.config import load_config
from tokenmill.trainer.model import GPT, GPTConfig
from tokenmill.trainer.sample import STOP_CHECK, generate, load_model, next_token_probs, pick

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


def _expected_with_stop(free: torch.Tensor, prompt_length: int, stop: int) -> torch.Tensor:
    """What checking every token gives, from the same draws without a stop token: each row as drawn up
    to its first `stop`, then `stop` repeated, until the token where the last row stopped."""
    new = free[:, prompt_length:]
    hits = new == stop
    if not hits.any(dim=1).all():  # a row never stops: the full length, stopped rows padded
        first = torch.where(hits.any(dim=1), hits.int().argmax(dim=1), new.size(1))
        length = new.size(1)
    else:
        first = hits.int().argmax(dim=1)
        length = int(first.max()) + 1
    positions = torch.arange(length)
    padded = torch.where(positions > first[:, None], stop, new[:, :length])
    return torch.cat([free[:, :prompt_length], padded], dim=1)


def test_stopping_a_batch_equals_checking_every_token() -> None:
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=96, block_size=32, n_layer=2, n_head=2, n_embd=32)).eval()
    prompt = torch.randint(0, 12, (4, 3))

    def run(stop: int | None) -> torch.Tensor:
        generator = torch.Generator().manual_seed(5)
        return generate(model, prompt, 60, generator=generator, vocab_limit=12, stop_token=stop)

    free = run(None)  # 60 new tokens in a block of 32: the cache window restarts on the way
    ends = []
    for stop in range(12):  # every token of the vocabulary in turn as the stop token
        stopped = run(stop)
        torch.testing.assert_close(stopped, _expected_with_stop(free, 3, stop), rtol=0, atol=0)
        ends.append(stopped.size(1) - 3)
    # The stop tokens covered the cases: ended between two checks, and never ended (every row ran on).
    assert any(end > STOP_CHECK and end % STOP_CHECK for end in ends), ends
    assert 60 in ends, ends


def _run_dir(tmp_path: Path, chat: bool) -> tuple[Path, GPT]:
    """A checkpoint as training writes it, with an optimizer that has taken a step."""
    config = load_config("tiny")
    small = {"vocab_size": 96, "block_size": 32, "n_layer": 2, "n_head": 2, "n_embd": 32}
    config = replace(config, model=replace(config.model, **small))
    torch.manual_seed(0)
    model = GPT(GPTConfig(**asdict(config.model)))
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.randint(0, 96, (2, 9)), torch.randint(0, 96, (2, 9))).backward()
    optimizer.step()
    payload = {
        "config": config.to_dict(),
        "step": 1,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "manifest": {"vocab_size": 90, "eot_id": 89},
        "rng": [checkpoint.rng_state(torch.device("cpu"))],
    }
    if chat:
        payload["chat"] = {"tokens": {"<|end|>": 93}, "base": "out/train"}
    checkpoint.save(tmp_path, payload)
    return tmp_path, model


@pytest.mark.parametrize("chat", [False, True])
def test_load_model_reads_the_weights_and_not_the_optimizer(tmp_path: Path, chat: bool) -> None:
    out, trained = _run_dir(tmp_path, chat)
    model, state = load_model(out)
    assert set(state) == {"config", "manifest"} | ({"chat"} if chat else set())
    assert state["manifest"] == {"vocab_size": 90, "eot_id": 89}
    assert not model.training
    for name, tensor in trained.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], tensor, rtol=0, atol=0)
    everything = checkpoint.load(out)
    assert set(checkpoint.load(out, parts=("step", "optimizer", "kind"))) == {"step", "optimizer"}
    assert len(everything["optimizer"]["state"]) == len(list(trained.parameters()))
