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

# Dense bf16 tensor-core FLOP/s per GPU, matched in order, case-insensitively, as substrings of
# torch.cuda.get_device_name(): more specific names come first ("NVIDIA H200 NVL" before "NVIDIA H200",
# which is the SXM part; "NVIDIA H100 80GB HBM3" is the H100 SXM). NVIDIA's datasheets print the
# figures with 2:4 structured sparsity, twice these.
PEAK_BF16_FLOPS: tuple[tuple[str, float], ...] = (
    # H200 NVL: 1,671 TFLOPS with sparsity on NVIDIA's H200 page (nvidia.com/en-us/data-center/h200).
    ("H200 NVL", 835e12),
    # H200 SXM ("NVIDIA H200"; also the GH200's GPU): the H100 SXM's compute, 1,979 with sparsity on
    # NVIDIA's H200 page; 989 dense in itkb.uw.cz/2026/06/nvidia-h200-vs-b300-precisions-cores.html.
    ("H200", 989e12),
    # H100 NVL: 1,671 with sparsity in NVIDIA's H100 table (reproduced at
    # jishuzhan.net/article/1872432607539499010).
    ("H100 NVL", 835e12),
    # H100 PCIe: 1,513 with sparsity in NVIDIA's H100 datasheet ("1/2 lower without sparsity"; table at
    # archive-lib.hpctech.co.jp/gpuproduct/nvidia-h100.html).
    ("H100 PCIe", 756e12),
    # H100 SXM ("NVIDIA H100 80GB HBM3"): 1,979 with sparsity in the same datasheet; 989.4 dense in
    # glennklockwood.com/garden/processors/h100.
    ("H100", 989e12),
    # H800 PCIe: the H100 PCIe with its chip-to-chip links cut, the same tensor cores and clocks.
    ("H800 PCIe", 756e12),
    # H800 SXM: 989 dense, 1,979 with sparsity (DeepSeek, github.com/deepseek-ai/FlashMLA/issues/75).
    ("H800", 989e12),
    # A100, SXM4 and PCIe, 40 and 80 GB: 312 dense, 624 with sparsity in NVIDIA's A100 datasheet
    # (nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf, via glennklockwood.com/garden/processors/A100).
    ("A100", 312e12),
    # GB200's B200 at 1,200 W: 5 PFLOPS with sparsity in NVIDIA's GB200 NVL72 specifications
    # (glennklockwood.com/garden/processors/B200). Before "B200", which its name contains.
    ("GB200", 2500e12),
    # HGX B200 at 1,000 W: 4.5 PFLOPS with sparsity per GPU in NVIDIA's HGX specifications (same page).
    ("B200", 2250e12),
)


def peak_for_name(name: str) -> float | None:
    """Dense bf16 peak of the GPU called `name` (as CUDA names it), or None if not in the table."""
    lowered = name.lower()
    return next((peak for key, peak in PEAK_BF16_FLOPS if key.lower() in lowered), None)


def peak_flops(device: torch.device) -> float | None:
    """Dense bf16 peak of one device, or None for a CPU or a GPU not in the table."""
    if device.type != "cuda":
        return None
    return peak_for_name(torch.cuda.get_device_name(device))


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
