"""Benchmark: training tokens/s and MFU of GPT-2 124M, tokenmill's trainer against a nanoGPT-style one.

    python bench/train.py [--device cpu|cuda] [--seq 1024] [--batch B] [--steps N] [--compile|--no-compile]
                          [--rounds R] [--data ROOT/tokens/NAME] [--json PATH]

Both train the same model (GPT-2 small: 12 layers, 12 heads, width 768, vocabulary padded to 50,304) on
the same device in the same process, on the same tokens (--data, or random tokens written as a
tokenmill token set), with the same batch, AdamW, clipping, bf16 autocast and (by default on CUDA)
torch.compile. tokenmill runs its real training loop, `trainer.train.train`, as `tokenmill train`
would (loader, logging, a final evaluation and checkpoint, which are not timed); the baseline is a
compact model and loop laid out the way nanoGPT's are (random windows from a memory-mapped shard).
Each side's first 3 steps (compilation, allocator warm-up) are left out of its tokens/s; MFU uses
trainer.mfu's formula and peak table for both (None on a CPU). Target on an H100: >= 45% MFU.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from contextlib import nullcontext
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tokenmill.tokenizer.shards import UINT16, read_shard, write_shard
from tokenmill.trainer.config import load_config
from tokenmill.trainer.data import open_token_set
from tokenmill.trainer.loop import WARMUP_STEPS
from tokenmill.trainer.mfu import flops_per_token, peak_flops
from tokenmill.trainer.model import GPT, GPTConfig
from tokenmill.trainer.train import resolve, train

GPT2_VOCAB, GPT2_EOT = 50257, 50256


class BaselineAttention(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.c_attn = nn.Linear(width, 3 * width)
        self.c_proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = (
            t.view(batch, length, self.heads, width // self.heads).transpose(1, 2)
            for t in self.c_attn(x).split(width, dim=2)
        )
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).contiguous().view(batch, length, width))


class BaselineBlock(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn = BaselineAttention(width, heads)
        self.c_fc, self.mlp_proj = nn.Linear(width, 4 * width), nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class BaselineGPT(nn.Module):
    """nanoGPT's layout: wte + wpe, a stack of pre-LayerNorm blocks, ln_f, lm_head tied to wte."""

    def __init__(self, vocab: int, length: int, layers: int, heads: int, width: int) -> None:
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, width), nn.Embedding(length, width)
        self.h = nn.ModuleList(BaselineBlock(width, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(width)
        self.lm_head = nn.Linear(width, vocab, bias=False)
        self.lm_head.weight = self.wte.weight
        for name, p in self.named_parameters():
            if p.dim() >= 2:
                std = (
                    0.02 / math.sqrt(2 * layers)
                    if name.endswith(("c_proj.weight", "mlp_proj.weight"))
                    else 0.02
                )
                nn.init.normal_(p, 0.0, std)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        x = self.wte(idx) + self.wpe(torch.arange(idx.size(1), device=idx.device))
        for block in self.h:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        return F.cross_entropy(logits.view(-1, logits.size(-1)).float(), targets.reshape(-1))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def baseline_tokens_per_s(
    config: GPTConfig, train_bin: Path, batch: int, steps: int, compile_model: bool, device: torch.device
) -> float:
    torch.manual_seed(0)
    model = BaselineGPT(config.vocab_size, config.block_size, config.n_layer, config.n_head, config.n_embd)
    model = model.to(device)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
        lr=6e-4,
        betas=(0.9, 0.95),
        fused=device.type == "cuda",
    )
    step_model = torch.compile(model) if compile_model else model
    autocast = torch.autocast("cuda", torch.bfloat16) if device.type == "cuda" else nullcontext()
    tokens = read_shard(train_bin)
    length = config.block_size
    rng = np.random.default_rng(0)
    start = 0.0
    for step in range(steps):
        if step == WARMUP_STEPS:
            _sync(device)
            start = time.perf_counter()
        offsets = rng.integers(0, len(tokens) - length - 1, size=batch)
        window = torch.from_numpy(np.stack([tokens[o : o + length + 1].astype(np.int64) for o in offsets]))
        if device.type == "cuda":
            window = window.pin_memory().to(device, non_blocking=True)
        with autocast:
            loss = step_model(window[:, :-1], window[:, 1:])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    _sync(device)
    return (steps - WARMUP_STEPS) * batch * length / (time.perf_counter() - start)


def random_token_set(root: Path, tokens: int) -> Path:
    """A tokenmill token set of random GPT-2 ids, a document every 1,000 tokens: throughput only."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    shards = []
    for index, (split, count) in enumerate((("val", 20_000), ("train", tokens))):
        data = rng.integers(0, GPT2_EOT, size=count)
        data[::1000] = GPT2_EOT
        name = f"{split}_{index:06d}"
        with open(root / f"{name}.bin", "wb") as handle:
            write_shard(handle, data, UINT16)
        np.arange(0, count, 1000, dtype="<u8").tofile(root / f"{name}.idx")
        shards.append(
            {"split": split, "index": index, "bin": f"{name}.bin", "idx": f"{name}.idx", "tokens": count}
        )
    manifest = {
        "format": "tokenmill-tokens/1",
        "tokenizer": {"name": "gpt2", "source": "gpt2"},
        "vocab_size": GPT2_VOCAB,
        "dtype": "uint16",
        "magic": UINT16.magic,
        "eot_id": GPT2_EOT,
        "shards": shards,
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu"
    )
    parser.add_argument("--seq", type=int, default=1024, help="sequence length (default 1024)")
    parser.add_argument(
        "--batch", type=int, default=None, help="sequences per step (default: cuda 16, cpu 1)"
    )
    parser.add_argument("--steps", type=int, default=None, help="steps per side (default: cuda 30, cpu 5)")
    parser.add_argument(
        "--compile", action=argparse.BooleanOptionalAction, default=None, help="default: on cuda"
    )
    parser.add_argument("--data", type=Path, default=None, help="a token set (default: random tokens)")
    parser.add_argument("--rounds", type=int, default=1, help="alternate baseline, tokenmill R times; best")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    device = torch.device(args.device)
    on_gpu = device.type == "cuda"
    batch = args.batch or (16 if on_gpu else 1)
    steps = args.steps or (30 if on_gpu else 5)
    compile_model = on_gpu if args.compile is None else args.compile
    if steps <= WARMUP_STEPS:
        parser.error(f"--steps must exceed the {WARMUP_STEPS} warm-up steps")
    if on_gpu:
        torch.set_float32_matmul_precision("high")

    with tempfile.TemporaryDirectory(prefix="tokenmill-bench-") as work:
        work = Path(work)
        data = args.data or random_token_set(
            work / "tokens", max(2_000_000, 2 * steps * batch * (args.seq + 1))
        )
        base = load_config("gpt2-124m")
        config = replace(
            base,
            model=replace(base.model, block_size=args.seq),
            batch_size=batch,
            micro_batch_size=batch,
            max_steps=steps,
            warmup_steps=1,
            val_every=0,
            val_windows=batch,
            checkpoint_every=0,
            log_every=steps,  # one record: every step after the warm-up, in one figure
            compile=compile_model,
        )
        token_set = open_token_set(data)
        config = resolve(config, token_set.vocab_size)
        model_config = GPTConfig(**asdict(config.model))
        with torch.device("meta"):
            flops_token = flops_per_token(GPT(model_config))
        peak = peak_flops(device)

        baseline, ours = 0.0, 0.0
        for round_ in range(args.rounds):  # alternating, best of each: fair on a machine others share
            run = baseline_tokens_per_s(model_config, token_set.train[0], batch, steps, compile_model, device)
            baseline = max(baseline, run)
            if on_gpu:
                torch.cuda.empty_cache()
            records = train(data, config, work / f"run{round_}", device=args.device)
            ours = max(ours, records[-1]["tokens_per_s"])
            if on_gpu:
                torch.cuda.empty_cache()

    def utilization(tokens_per_s: float) -> float | None:
        return None if peak is None else flops_token * tokens_per_s / peak

    name = torch.cuda.get_device_name(device) if on_gpu else "CPU"
    print(
        f"\ndevice {name} (peak {'unknown' if peak is None else f'{peak / 1e12:.0f} TFLOPS bf16'}) | "
        f"gpt2-124m seq {args.seq} batch {batch} | {steps} steps, {steps - WARMUP_STEPS} timed, "
        f"best of {args.rounds} | "
        f"{'bf16 autocast' if on_gpu else 'float32'}, compile {'on' if compile_model else 'off'}"
    )
    results = {"device": name, "seq": args.seq, "batch": batch, "steps": steps, "compile": compile_model}
    results["rounds"] = args.rounds
    for label, tokens_per_s in (("nanoGPT-style baseline", baseline), ("tokenmill", ours)):
        share = utilization(tokens_per_s)
        shown = "n/a" if share is None else f"{100 * share:.1f}%"
        print(f"{label:<24} {tokens_per_s:>12,.0f} tok/s   MFU {shown}")
        results[label] = {"tokens_per_s": tokens_per_s, "mfu": share}
    results["ratio"] = ours / baseline
    print(f"tokenmill / baseline     {ours / baseline:.3f}x")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
