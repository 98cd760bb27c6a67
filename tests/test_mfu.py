"""MFU: GPT-2 124M's parameter count and FLOPs per token, the dense bf16 peak for the names CUDA gives
real GPUs, and the utilization ratio."""

from __future__ import annotations

import pytest
import torch

from tokenmill.trainer import mfu
from tokenmill.trainer.model import GPT, GPTConfig


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
        ("NVIDIA H100 80GB HBM3", 989e12),  # SXM
        ("NVIDIA H100 PCIe", 756e12),
        ("NVIDIA H100 NVL", 835e12),
        ("NVIDIA H200", 989e12),  # SXM
        ("NVIDIA H200 NVL", 835e12),  # not the SXM's 989: its MFU would read 16% low
        ("NVIDIA GH200 480GB", 989e12),
        ("NVIDIA H800", 989e12),
        ("NVIDIA H800 PCIe", 756e12),
        ("NVIDIA A100-SXM4-80GB", 312e12),
        ("NVIDIA A100-SXM4-40GB", 312e12),
        ("NVIDIA A100-PCIE-40GB", 312e12),
        ("NVIDIA A100 80GB PCIe", 312e12),
        ("NVIDIA B200", 2250e12),
        ("NVIDIA GB200", 2500e12),
        ("NVIDIA H20", None),  # not an H200
        ("Tesla T4", None),
        ("NVIDIA GeForce RTX 4090", None),
    ],
)
def test_peak_by_device_name(name: str, peak: float | None) -> None:
    assert mfu.peak_for_name(name) == peak


def test_mfu_is_none_on_cpu_and_a_ratio_on_a_known_gpu() -> None:
    assert mfu.peak_flops(torch.device("cpu")) is None
    assert mfu.mfu(1000, 1e9, None) is None
    assert mfu.mfu(855_166_464, 500_000, 989e12, devices=1) == pytest.approx(0.4323, abs=1e-4)
    assert mfu.mfu(855_166_464, 1_000_000, 989e12, devices=2) == pytest.approx(0.4323, abs=1e-4)
