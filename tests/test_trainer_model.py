"""The GPT: the loss at initialization and over masked targets, QK-norm under bf16 autocast, the KV
cache (chunked prefill, long generations) and configs. Parameter count and FLOPs: test_mfu.py."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from tokenmill.trainer.config import load_config
from tokenmill.trainer.model import GPT, GPTConfig, KVCache, _rms_norm_in_dtype
from tokenmill.trainer.sample import generate

SMALL = {"vocab_size": 96, "block_size": 32, "n_layer": 2, "n_head": 2, "n_embd": 32}
VARIANTS = {
    "gpt2": GPTConfig(**SMALL),
    "rotary-rmsnorm-qknorm": GPTConfig(**SMALL, rotary=True, norm="rmsnorm", qk_norm=True, bias=False),
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_loss_at_initialization_is_about_log_vocab(variant: str) -> None:
    torch.manual_seed(0)
    model = GPT(VARIANTS[variant])
    tokens = torch.randint(0, 96, (4, 33))
    assert model(tokens[:, :-1], tokens[:, 1:]).item() == pytest.approx(math.log(96), abs=0.1)


def test_loss_counts_only_unmasked_targets() -> None:
    torch.manual_seed(0)
    model = GPT(VARIANTS["gpt2"]).eval()
    tokens = torch.randint(0, 96, (3, 17))
    inputs, targets = tokens[:, :-1], tokens[:, 1:].clone()
    targets[0, :5] = -1  # a masked prefix (a user turn, say)
    targets[1] = -1  # a row with nothing to learn (padding)
    targets[2, 10:] = -1
    kept = (targets != -1).nonzero().tolist()
    with torch.no_grad():
        loss = model(inputs, targets)
        total = model(inputs, targets, reduction="sum")
        each = []  # every kept position alone: its own cross-entropy
        for row, column in kept:
            single = torch.full_like(targets, -1)
            single[row, column] = targets[row, column]
            each.append(model(inputs, single))
        # The fully masked row adds nothing, whatever its tokens.
        without_row = model(inputs[[0, 2]], targets[[0, 2]])
        other_tokens = model(torch.cat([inputs[:1], inputs[:1], inputs[2:]]), targets)
    assert len(kept) == 11 + 10
    torch.testing.assert_close(loss, torch.stack(each).mean())
    torch.testing.assert_close(total, torch.stack(each).sum())
    torch.testing.assert_close(loss, without_row)
    torch.testing.assert_close(loss, other_tokens)


def _fused_rms_norms(run) -> int:
    """How many times `run()` reached the fused RMSNorm kernel (not the mixed-dtype fallback)."""
    with torch.profiler.profile() as profile:
        run()
    return sum(event.name == "aten::_fused_rms_norm" for event in profile.events())


def test_qk_norm_stays_in_bf16_under_autocast() -> None:
    torch.manual_seed(0)
    config = GPTConfig(**SMALL, qk_norm=True)  # LayerNorm blocks: the only RMSNorms are the QK-norms
    model = GPT(config).eval()
    norm = model.blocks[0].attn.q_norm
    head_dim = config.n_embd // config.n_head
    queries = torch.randn(2, config.n_head, 7, head_dim).bfloat16()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        norm.weight.uniform_(0.5, 1.5)
        normed = _rms_norm_in_dtype(norm, queries)
        fused = _fused_rms_norms(lambda: model(torch.randint(0, 96, (2, 9))))
    exact = torch.nn.functional.rms_norm(queries.float(), (head_dim,), norm.weight.detach(), 1e-6)
    assert normed.dtype == torch.bfloat16
    torch.testing.assert_close(normed.float(), exact, rtol=1.6e-2, atol=1e-2)
    assert fused == 2 * config.n_layer  # the queries and keys of every layer took the fused kernel


@pytest.mark.parametrize("variant", VARIANTS)
def test_chunked_prefill_with_cache_equals_full_forward(variant: str) -> None:
    torch.manual_seed(0)
    model = GPT(VARIANTS[variant]).eval()
    tokens = torch.randint(0, 96, (3, 20))
    cache = KVCache(model.config, 3, torch.device("cpu"), torch.float32)
    end = 0
    for chunk in (5, 3, 1, 7, 4):  # prefill, then chunks that need the offset causal mask, then one token
        logits = model(tokens[:, end : end + chunk], cache=cache)
        end += chunk
        torch.testing.assert_close(logits, model(tokens[:, :end]), rtol=1e-5, atol=1e-5)
    assert cache.length == 20


@pytest.mark.parametrize("variant", VARIANTS)
def test_cached_and_uncached_greedy_generation_give_the_same_tokens(variant: str) -> None:
    torch.manual_seed(0)
    # An untied, sharpened head: a tied random model just repeats its input token, and near-ties of the
    # initialization's flat distribution would test rounding rather than the cache.
    model = GPT(replace(VARIANTS[variant], tie_embeddings=False)).eval()
    with torch.no_grad():
        model.head.weight.mul_(20)
    prompt = torch.randint(0, 96, (2, 7))
    # 90 new tokens in a block of 32: the window restarts several times.
    cached = generate(model, prompt, 90, temperature=0, use_cache=True)
    uncached = generate(model, prompt, 90, temperature=0, use_cache=False)
    assert cached.shape == (2, 97)
    torch.testing.assert_close(cached, uncached, rtol=0, atol=0)
    assert len(set(cached[0, 7:].tolist())) > 5  # a real sequence, not one repeated token


def test_generation_keeps_to_the_vocab_limit_and_stops_at_the_stop_token() -> None:
    torch.manual_seed(0)
    model = GPT(VARIANTS["gpt2"]).eval()
    generator = torch.Generator().manual_seed(0)
    tokens = generate(model, torch.zeros(1, 3, dtype=torch.long), 200, generator=generator, vocab_limit=10)
    assert tokens.shape == (1, 203) and tokens[0, 3:].max() < 10
    generator = torch.Generator().manual_seed(0)
    stopped = generate(model, torch.zeros(1, 3, dtype=torch.long), 200, generator=generator, vocab_limit=10,
                       stop_token=int(tokens[0, 10]))  # fmt: skip
    assert stopped.shape[1] <= 11 and stopped[0, -1] == tokens[0, 10]
    torch.testing.assert_close(stopped[0], tokens[0, : stopped.shape[1]])


def test_config_file_overrides_a_base_and_rejects_unknown_keys(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    path.write_text(
        json.dumps({"base": "gpt2-124m", "model": {"n_layer": 6}, "max_steps": 10, "warmup_steps": 2})
    )
    config = load_config(str(path))
    assert (config.model.n_layer, config.model.n_embd, config.max_steps, config.lr) == (6, 768, 10, 6e-4)
    path.write_text(json.dumps({"model": {"layers": 6}, "learning_rate": 1}))
    with pytest.raises(ValueError, match=r"unknown config keys: \['learning_rate'\]"):
        load_config(str(path))
    path.write_text(json.dumps({"model": {"layers": 6}}))
    with pytest.raises(ValueError, match=r"\['model.layers'\]"):
        load_config(str(path))
    with pytest.raises(FileNotFoundError, match="neither tiny nor gpt2-124m nor a file"):
        load_config("gpt5")
