"""Sample: text from a trained checkpoint, with a KV cache; greedy or temperature / top-k / top-p.

    tokenmill sample --checkpoint DIR --prompt TEXT [--max-new-tokens N] [--temperature T] [--top-k K]
                     [--top-p P] [--seed S] [--device cpu|cuda]

DIR is a `tokenmill train` output directory: the model comes from its checkpoint, the tokenizer from
the manifest saved beside it. The prompt is encoded after an EOT token, as every training document
begins; generation stops at the next EOT (the end of the document) or after N tokens.
--temperature 0 is greedy decoding. On a GPU machine whose GPUs torch cannot use, it stops with an
error rather than sampling on the CPU unasked (--device cpu does that on purpose).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tokenmill.jobs.stages.settings import option
from tokenmill.pipeline.errors import UserError

if TYPE_CHECKING:  # torch loads only when a command runs
    import torch

SUMMARY = "text from a trained checkpoint: greedy, temperature, top-k, top-p"


@dataclass(frozen=True, kw_only=True)
class SampleSettings:
    checkpoint: str = option(help="a `tokenmill train` --out", metavar="DIR")
    prompt: str = option("", "text to continue (default: none)", metavar="TEXT")
    max_new_tokens: int = option(200, "tokens to generate at most (default 200)", metavar="N")
    temperature: float = option(0.8, "0: greedy (default 0.8)", metavar="T")
    top_k: int | None = option(None, "sample from the K most likely tokens", metavar="K")
    top_p: float | None = option(None, "nucleus mass, in (0, 1]", metavar="P")
    seed: int = option(0, "sampling seed (default 0)", metavar="S")
    device: str | None = option(None, "default: cuda if present", choices=("cpu", "cuda"))

    def __post_init__(self) -> None:
        if self.temperature < 0 or (self.top_p is not None and not 0 < self.top_p <= 1):
            raise UserError("--temperature must be >= 0 and --top-p in (0, 1]")
        if self.top_k is not None and self.top_k < 1:
            raise UserError(f"--top-k {self.top_k}: give 1 or more")
        if self.max_new_tokens < 1:
            raise UserError(f"--max-new-tokens {self.max_new_tokens}: give 1 or more")


def check_sample(settings: SampleSettings) -> None:
    if not (Path(settings.checkpoint) / "manifest.json").is_file():
        raise UserError(f"--checkpoint {settings.checkpoint} is not a `tokenmill train` output directory")


def run_sample(settings: SampleSettings) -> dict[str, Any]:
    import torch

    from tokenmill.tokenizer.encodings import load_encoding
    from tokenmill.trainer.distributed import device_kind
    from tokenmill.trainer.sample import load_model

    check_sample(settings)
    device = device_kind(settings.device)
    manifest = json.loads((Path(settings.checkpoint) / "manifest.json").read_text())
    encoding = load_encoding(manifest["tokenizer"]["source"])
    model, _ = load_model(settings.checkpoint, device)
    eot = manifest["eot_id"]
    prompt = torch.tensor([[eot, *encoding.encode_ordinary(settings.prompt)]], device=device)
    generator = torch.Generator(device=device).manual_seed(settings.seed)
    new = continuation(model, prompt, settings, generator, manifest["vocab_size"], eot)
    print(settings.prompt + encoding.decode(new))
    return {"tokens": len(new)}


def continuation(
    model: torch.nn.Module,
    prompt: torch.Tensor,
    settings: SampleSettings,
    generator: torch.Generator,
    vocab_limit: int,
    stop_token: int,
) -> list[int]:
    """The tokens generated after `prompt` with the settings' decoding options, without the stop token."""
    from tokenmill.trainer.sample import generate

    tokens = generate(
        model,
        prompt,
        settings.max_new_tokens,
        settings.temperature,
        settings.top_k,
        settings.top_p,
        generator,
        vocab_limit=vocab_limit,
        stop_token=stop_token,
    )
    new = tokens[0, prompt.size(1) :].tolist()
    return new[: new.index(stop_token)] if stop_token in new else new
