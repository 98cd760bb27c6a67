"""Generation from a trained GPT: greedy, temperature, top-k and top-p (nucleus) sampling, KV cache.

The context is a window of at most block_size tokens. When the text outgrows it, the window restarts
at the last block_size / 2 tokens: the cache is refilled from them in one pass and generation goes on
one token at a time, so the cache works at any length, and the uncached path (`use_cache=False`, every
step recomputing its window) sees exactly the same windows and gives the same tokens.

Generation runs in the model's precision on the device (bf16 autocast and a bf16 cache on CUDA, float32
on a CPU) and never waits for the GPU while it goes: whether every row has reached the stop token is
asked only every STOP_CHECK tokens (a row that has stops emitting its stop token from then on), and
the result is cut back to where the last row stopped, as if it had been asked after every token.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from tokenmill.trainer import checkpoint
from tokenmill.trainer.config import from_dict
from tokenmill.trainer.model import GPT, GPTConfig, KVCache, autocast

STOP_CHECK = 16  # tokens between the checks (a GPU sync each) for every row having stopped


def next_token_probs(
    logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None
) -> torch.Tensor:
    """Sampling probabilities (B, V) from last-position logits: scaled by 1/temperature, then the
    top_k largest kept, then the nucleus kept: the smallest set of most likely tokens whose
    probability reaches top_p (the most likely token always stays). Renormalized."""
    if temperature <= 0:
        raise ValueError("temperature 0 is greedy decoding: take the argmax, there is nothing to sample")
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if top_p is not None and top_p < 1.0:
        sorted_probs, order = torch.sort(probs, dim=-1, descending=True)
        before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs  # mass of the more likely tokens
        sorted_probs = sorted_probs.masked_fill(before >= top_p, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
        probs = probs / probs.sum(dim=-1, keepdim=True)
    return probs


def pick(
    logits: torch.Tensor,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """The next token (B, 1): the argmax when temperature is 0, else a draw from next_token_probs."""
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    return torch.multinomial(next_token_probs(logits, temperature, top_k, top_p), 1, generator=generator)


@torch.no_grad()
def generate(
    model: GPT,
    prompt: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    vocab_limit: int | None = None,
    stop_token: int | None = None,
    use_cache: bool = True,
) -> torch.Tensor:
    """Prompt (B, T) followed by up to `max_new_tokens` tokens. `vocab_limit` keeps the padding ids a
    model's vocabulary may have beyond the tokenizer's out of reach. With a `stop_token`, a row that
    has produced it repeats it, and generation ends at the token where the last row produced it."""
    block = model.config.block_size
    device = prompt.device
    cache_dtype = torch.bfloat16 if device.type == "cuda" else next(model.parameters()).dtype
    tokens, start = prompt, max(prompt.size(1) - block, 0)
    cache: KVCache | None = None
    done = torch.zeros(prompt.size(0), 1, dtype=torch.bool, device=device)
    with autocast(device):
        for made in range(1, max_new_tokens + 1):
            if tokens.size(1) - start > block:
                start = tokens.size(1) - block // 2
                cache = None
            if not use_cache:
                logits = model(tokens[:, start:])
            elif cache is None:
                cache = KVCache(model.config, tokens.size(0), device, cache_dtype)
                logits = model(tokens[:, start:], cache=cache)
            else:
                logits = model(tokens[:, -1:], cache=cache)
            if vocab_limit is not None:
                logits = logits[:, :vocab_limit]
            new = pick(logits, temperature, top_k, top_p, generator)
            if stop_token is not None:
                new = new.masked_fill(done, stop_token)
                done |= new == stop_token
            tokens = torch.cat([tokens, new], dim=1)
            if stop_token is not None and made % STOP_CHECK == 0 and done.all():
                break
    return tokens if stop_token is None else _end_at_last_stop(tokens, prompt.size(1), stop_token)


def _end_at_last_stop(tokens: torch.Tensor, prompt_length: int, stop_token: int) -> torch.Tensor:
    """`tokens` up to the first new token at which every row has produced `stop_token`."""
    stopped = tokens[:, prompt_length:] == stop_token
    if not stopped.any(dim=1).all():
        return tokens  # some row never stopped: generation ran its full length
    return tokens[:, : prompt_length + int(stopped.int().argmax(dim=1).max()) + 1]


def load_model(out: str | Path, device: torch.device | str = "cpu") -> tuple[GPT, dict[str, Any]]:
    """The trained model of a run directory, in eval mode, and the checkpoint's config and manifest
    (and "chat" for a fine-tuned run). The optimizer's state is never read."""
    state = checkpoint.load(Path(out), parts=("config", "model", "manifest", "chat"))
    config = from_dict(state["config"])
    model = GPT(GPTConfig(**asdict(config.model)))
    model.load_state_dict(state.pop("model"))
    return model.to(device).eval(), state
