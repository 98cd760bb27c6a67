"""Model FLOPs utilization: the FLOPs a step must do, divided by what the device could do in that time.

FLOPs per token (PaLM, appendix B; nanoGPT uses the same): 6 N + 12 L d T for training, where N counts
the parameters that take part in a matmul per token (every parameter but the lookup tables: the
position table, and the token table unless the output head shares it), L is the number of layers, d
the width and T the sequence length. 6 = 2 (multiply-add) x 3 (forward, and backward for inputs and
weights); the attention term counts the full T x T score and value products, as the convention does,
although a causal kernel skips half of them. Recomputation is never counted: this is model FLOPs.

Peak: dense bf16 tensor-core FLOPs by GPU name (no sparsity). An unknown GPU or a CPU has no peak, and
its MFU is None rather than a guess.
"""

from __future__ import annotations

import torch

from tokenmill.trainer.model import GPT

# Matched in order against torch.cuda.get_device_name(), e.g. "NVIDIA H100 80GB HBM3" (SXM),
# "NVIDIA H100 PCIe", "NVIDIA H200", "NVIDIA A100-SXM4-80GB". More specific names come first.
PEAK_BF16_FLOPS: tuple[tuple[str, float], ...] = (
    ("H200", 989e12),
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),  # SXM
    ("A100", 312e12),
)


def peak_flops(device: torch.device) -> float | None:
    """Dense bf16 peak of one device, or None for a CPU or a GPU not in the table."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_BF16_FLOPS if key in name), None)


def matmul_params(model: GPT) -> int:
    """Parameters used in a matmul per token (shared tensors once): all but the lookup tables."""
    unique = {id(p): p for p in model.parameters()}
    lookups = [] if model.wpe is None else [model.wpe.weight]
    if not model.config.tie_embeddings:
        lookups.append(model.wte.weight)
    return sum(p.numel() for p in unique.values()) - sum(p.numel() for p in lookups)


def flops_per_token(model: GPT) -> int:
    config = model.config
    return 6 * matmul_params(model) + 12 * config.n_layer * config.n_embd * config.block_size


def mfu(flops_token: int, tokens_per_s: float, peak: float | None, devices: int = 1) -> float | None:
    """Achieved over peak FLOPs, with `tokens_per_s` summed over `devices` devices of that peak."""
    if peak is None:
        return None
    return flops_token * tokens_per_s / (peak * devices)
