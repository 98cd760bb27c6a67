"""A GPT-2-style decoder: token (+ learned position) embeddings, pre-norm blocks, tied output head.

Options, each off in GPT-2 itself: rotary positions instead of learned ones, RMSNorm instead of
LayerNorm, and QK-norm (RMSNorm of queries and keys per head, which keeps attention logits bounded at
high learning rates). Attention is PyTorch's `scaled_dot_product_attention`, so the fastest kernel of
the device (flash, memory-efficient or plain math) runs it. Generation passes a `KVCache`; the same
`forward` serves training, prefill and one-token decode.

On CUDA the model runs under bf16 autocast (`autocast`): matmuls in bf16, the float32 weights as
masters. The loss counts only the targets that are not -1 (padding and masked tokens).
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class GPTConfig:
    vocab_size: int
    block_size: int  # the longest sequence, and the training sequence length
    n_layer: int
    n_head: int
    n_embd: int
    dropout: float = 0.0
    bias: bool = True  # biases in linear layers and LayerNorm, as in GPT-2
    rotary: bool = False  # rotary positions (no position table) instead of learned ones
    rope_base: float = 10000.0
    norm: str = "layernorm"  # or "rmsnorm"
    qk_norm: bool = False
    tie_embeddings: bool = True  # the output head reuses the token embedding

    def __post_init__(self) -> None:
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd {self.n_embd} is not a multiple of n_head {self.n_head}")
        if self.rotary and (self.n_embd // self.n_head) % 2:
            raise ValueError("rotary positions need an even head size")
        if self.norm not in ("layernorm", "rmsnorm"):
            raise ValueError(f"norm must be 'layernorm' or 'rmsnorm', not {self.norm!r}")


class KVCache:
    """Keys and values of every layer for the tokens seen so far, preallocated to `max_len`."""

    def __init__(self, config: GPTConfig, batch: int, device: torch.device, dtype: torch.dtype) -> None:
        head_dim = config.n_embd // config.n_head
        shape = (config.n_layer, batch, config.n_head, config.block_size, head_dim)
        self.keys = torch.zeros(shape, device=device, dtype=dtype)
        self.values = torch.zeros(shape, device=device, dtype=dtype)
        self.length = 0

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store the new keys/values of `layer` after the cached ones; return all of them."""
        end = self.length + k.size(2)
        if end > self.keys.size(3):
            raise ValueError(f"KV cache holds {self.keys.size(3)} positions; {end} were asked for")
        self.keys[layer, :, :, self.length : end] = k
        self.values[layer, :, :, self.length : end] = v
        return self.keys[layer, :, :, :end], self.values[layer, :, :, :end]


def _norm(config: GPTConfig, size: int) -> nn.Module:
    if config.norm == "rmsnorm":
        return nn.RMSNorm(size, eps=1e-6)
    return nn.LayerNorm(size, bias=config.bias)


def autocast(device: torch.device) -> AbstractContextManager:
    """The precision the model trains and generates in on `device`: bf16 autocast on CUDA, float32
    elsewhere (CPU bf16 matmuls are slower than float32 ones)."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


def _rms_norm_in_dtype(norm: nn.RMSNorm, x: torch.Tensor) -> torch.Tensor:
    """`norm(x)` computed and returned in x's dtype. Under bf16 autocast the queries and keys are bf16
    while the gains are float32: autocast would cast them to float32 (it runs norms in float32) and
    the mixed dtypes miss the fused kernel, which accumulates in float32 for any input dtype anyway."""
    with torch.autocast(x.device.type, enabled=False):
        return F.rms_norm(x, norm.normalized_shape, norm.weight.to(x.dtype), norm.eps)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding in the half-split layout: pairs (x[i], x[i + D/2]) turn by position * freq[i]."""
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    first, second = x.chunk(2, dim=-1)
    return torch.cat((first * cos - second * sin, second * cos + first * sin), dim=-1)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig, layer: int) -> None:
        super().__init__()
        self.layer = layer
        self.n_head = config.n_head
        self.dropout = config.dropout
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        head_dim = config.n_embd // config.n_head
        self.q_norm = nn.RMSNorm(head_dim, eps=1e-6) if config.qk_norm else None
        self.k_norm = nn.RMSNorm(head_dim, eps=1e-6) if config.qk_norm else None

    def forward(
        self, x: torch.Tensor, rotary: tuple[torch.Tensor, torch.Tensor] | None, cache: KVCache | None
    ) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = self.qkv(x).view(batch, length, 3, self.n_head, width // self.n_head).unbind(2)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, H, T, D)
        if self.q_norm is not None:
            q, k = _rms_norm_in_dtype(self.q_norm, q), _rms_norm_in_dtype(self.k_norm, k)
        if rotary is not None:
            q, k = _rotate(q, *rotary), _rotate(k, *rotary)
        past = 0
        if cache is not None:
            past = cache.length
            k, v = cache.update(self.layer, k, v)
        # Query i (at position past + i) sees keys 0..past + i. SDPA's is_causal aligns the mask to the
        # top left, which is right only without a cache; a single new query sees everything cached.
        mask = None
        if past and length > 1:
            mask = torch.ones(length, past + length, dtype=torch.bool, device=x.device).tril(past)
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            is_causal=past == 0 and length > 1,
            dropout_p=self.dropout if self.training else 0.0,
        )
        return self.proj(y.transpose(1, 2).reshape(batch, length, width))


class MLP(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.up = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.gelu(self.up(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, config: GPTConfig, layer: int) -> None:
        super().__init__()
        self.norm1 = _norm(config, config.n_embd)
        self.attn = CausalSelfAttention(config, layer)
        self.norm2 = _norm(config, config.n_embd)
        self.mlp = MLP(config)
        self.drop = nn.Dropout(config.dropout)

    def forward(
        self, x: torch.Tensor, rotary: tuple[torch.Tensor, torch.Tensor] | None, cache: KVCache | None
    ) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x), rotary, cache))
        return x + self.drop(self.mlp(self.norm2(x)))


class GPT(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = None if config.rotary else nn.Embedding(config.block_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config, layer) for layer in range(config.n_layer))
        self.norm_f = _norm(config, config.n_embd)
        self.head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.head.weight = self.wte.weight
        if config.rotary:
            head_dim = config.n_embd // config.n_head
            freq = config.rope_base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
            angle = torch.outer(torch.arange(config.block_size, dtype=torch.float32), freq)
            self.register_buffer("rope_cos", angle.cos(), persistent=False)
            self.register_buffer("rope_sin", angle.sin(), persistent=False)
        self.apply(self._init_weights)
        # GPT-2: residual projections scaled by 1/sqrt(2 * n_layer), so the residual stream's variance
        # does not grow with depth.
        for block in self.blocks:
            for proj in (block.attn.proj, block.mlp.proj):
                nn.init.normal_(proj.weight, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        cache: KVCache | None = None,
        reduction: str = "mean",
    ) -> torch.Tensor:
        """The cross-entropy over the positions whose target is not -1 when `targets` are given, their
        mean or (reduction="sum", for means over several batches) their sum; else the logits of the
        last position only (B, vocab): all that generation needs, without a (B, T, vocab) tensor."""
        length = idx.size(1)
        start = cache.length if cache is not None else 0
        if start + length > self.config.block_size:
            raise ValueError(f"{start + length} positions exceed block_size {self.config.block_size}")
        positions = torch.arange(start, start + length, device=idx.device)
        x = self.wte(idx)
        rotary = None
        if self.wpe is not None:
            x = x + self.wpe(positions)
        else:
            rotary = (self.rope_cos[positions], self.rope_sin[positions])
        x = self.drop(x)
        for block in self.blocks:
            x = block(x, rotary, cache)
        if cache is not None:
            cache.length += length
        x = self.norm_f(x)
        if targets is None:
            return self.head(x[:, -1])
        logits = self.head(x).view(-1, self.config.vocab_size).float()
        return F.cross_entropy(logits, targets.reshape(-1), ignore_index=-1, reduction=reduction)
