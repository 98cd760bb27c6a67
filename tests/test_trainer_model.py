"""The GPT: GPT-2 124M's parameter count and FLOPs, the KV cache (chunked prefill, long generations),
the loss at initialization, the peak table and configs."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from tokenmill.trainer import mfu
from tokenmill.trainer.config import load_config
from tokenmill.trainer.model import GPT, GPTConfig, KVCache
from tokenmill.trainer.sample import generate

SMALL = {"vocab_size": 96, "block_size": 32, "n_layer": 2, "n_head": 2, "n_embd": 32}
VARIANTS = {
    "gpt2": GPTConfig(**SMALL),
    "rotary-rmsnorm-qknorm": GPTConfig(**SMALL, rotary=True, norm="rmsnorm", qk_norm=True, bias=False),
}


def _gpt2_124m() -> GPT:
    with torch.device("meta"):  # shapes only: no 500 MB of weights to initialize
        return GPT(GPTConfig(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768))


def test_gpt2_124m_has_gpt2s_parameter_count() -> None:
    model = _gpt2_124m()
    assert sum(p.numel() for p in model.parameters()) == 124_439_808  # tied head counted once


def test_flops_per_token_known_answer() -> None:
    # 6 x (124,439,808 - 1024 x 768 position table) + 12 x 12 layers x 768 x 1024
    assert mfu.flops_per_token(_gpt2_124m()) == 6 * 123_653_376 + 113_246_208


@pytest.mark.parametrize(
    ("name", "peak"),
    [
        ("NVIDIA H100 80GB HBM3", 989e12),
        ("NVIDIA H100 PCIe", 756e12),
        ("NVIDIA H200", 989e12),
        ("NVIDIA A100-SXM4-80GB", 312e12),
        ("NVIDIA A100-PCIE-40GB", 312e12),
        ("Tesla T4", None),
    ],
)
def test_peak_table_by_device_name(monkeypatch: pytest.MonkeyPatch, name: str, peak: float | None) -> None:
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    assert mfu.peak_flops(torch.device("cuda")) == peak


def test_mfu_is_none_on_cpu_and_a_ratio_on_a_known_gpu() -> None:
    assert mfu.peak_flops(torch.device("cpu")) is None
    assert mfu.mfu(1000, 1e9, None) is None
    assert mfu.mfu(855_166_464, 500_000, 989e12, devices=1) == pytest.approx(0.4323, abs=1e-4)
    assert mfu.mfu(855_166_464, 1_000_000, 989e12, devices=2) == pytest.approx(0.4323, abs=1e-4)


@pytest.mark.parametrize("variant", VARIANTS)
def test_loss_at_initialization_is_about_log_vocab(variant: str) -> None:
    torch.manual_seed(0)
    model = GPT(VARIANTS[variant])
    tokens = torch.randint(0, 96, (4, 33))
    assert model(tokens[:, :-1], tokens[:, 1:]).item() == pytest.approx(math.log(96), abs=0.1)


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
    path.write_text(json.dumps({"base": "gpt2-124m", "model": {"n_layer": 6}, "max_steps": 10}))
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
