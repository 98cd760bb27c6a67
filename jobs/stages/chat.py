"""Chat: talk in the terminal with a model fine-tuned on conversations by `tokenmill sft`.

    tokenmill chat --checkpoint DIR [--system TEXT] [--prompt TEXT] [--max-new-tokens N]
                   [--temperature T] [--top-k K] [--top-p P] [--seed S] [--device cpu|cuda]

Each turn the conversation so far goes to the model in the chat template (trainer/chat.py) and the
reply runs until the assistant's <|end|> token (or N tokens). The history is kept within the model's
context: when it outgrows the context less the room for a reply, the oldest exchanges are left out
(never the system message, never your newest message). Type /reset to start over, /quit or Ctrl-D to
end. --prompt TEXT prints the one reply to TEXT alone and exits, for scripts.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenmill.jobs.stages.sample import SampleSettings, continuation
from tokenmill.jobs.stages.settings import option
from tokenmill.pipeline.errors import UserError

SUMMARY = "talk with a model fine-tuned by `tokenmill sft`, or one reply with --prompt"


@dataclass(frozen=True, kw_only=True)
class ChatSettings(SampleSettings):
    """The decoding options of `tokenmill sample`, with chat's defaults, and the conversation's."""

    checkpoint: str = option(help="a `tokenmill sft` --out", metavar="DIR")
    prompt: str | None = option(None, "print the reply to TEXT alone and exit", metavar="TEXT")
    max_new_tokens: int = option(256, "tokens per reply at most (default 256)", metavar="N")
    temperature: float = option(0.7, "0: greedy (default 0.7)", metavar="T")
    system: str | None = option(None, "a system message opening the conversation", metavar="TEXT")

    def __post_init__(self) -> None:
        super().__post_init__()
        for flag, text in (("--prompt", self.prompt), ("--system", self.system)):
            if text is not None and not text.strip():
                raise UserError(f"{flag} is empty: give some text or leave the option out")


def check_chat(settings: ChatSettings) -> None:
    """A run directory whose checkpoint went through `tokenmill sft` (it has the chat tokens)."""
    from tokenmill.trainer import checkpoint

    out = Path(settings.checkpoint)
    if not (out / "manifest.json").is_file() or not (out / checkpoint.CHECKPOINT).is_file():
        raise UserError(f"--checkpoint {out} is not a `tokenmill train` or `tokenmill sft` output directory")
    if checkpoint.load(out, parts=("chat",)).get("chat") is None:
        raise UserError(f"{out} is a base model: fine-tune it with tokenmill sft first")


def run_chat(settings: ChatSettings) -> dict[str, Any]:
    import torch

    from tokenmill.tokenizer.encodings import load_encoding
    from tokenmill.trainer.chat import END, chat_encoding, chat_token_ids, fit_history, prompt_tokens
    from tokenmill.trainer.sample import load_model

    check_chat(settings)
    device = settings.device or ("cuda" if torch.cuda.is_available() else "cpu")
    manifest = json.loads((Path(settings.checkpoint) / "manifest.json").read_text())
    encoding = chat_encoding(load_encoding(manifest["tokenizer"]["source"]))
    model, state = load_model(settings.checkpoint, device)
    if state["chat"]["tokens"] != chat_token_ids(encoding):
        raise UserError(
            f"{settings.checkpoint} was fine-tuned with chat tokens {state['chat']['tokens']}, "
            f"not this version's {chat_token_ids(encoding)}"
        )
    eot, end = manifest["eot_id"], encoding.encode_single_token(END)
    context = model.config.block_size
    budget = context - min(settings.max_new_tokens, context // 2)  # the rest is room for the reply
    generator = torch.Generator(device=device).manual_seed(settings.seed)

    def reply(turns: list[dict[str, str]]) -> str:
        """The assistant's answer to the newest user message of `turns`, its <|end|> left out."""
        messages = fit_history(settings.system, turns, encoding, eot, budget)
        prompt = torch.tensor([prompt_tokens(messages, encoding, eot)], device=device)
        return encoding.decode(continuation(model, prompt, settings, generator, encoding.n_vocab, end))

    if settings.prompt is not None:
        print(reply([{"role": "user", "content": settings.prompt}]))
        return {"replies": 1}
    parameters = sum(p.numel() for p in model.parameters())
    print(
        f"tokenmill chat: {settings.checkpoint} ({parameters / 1e6:.1f}M parameters, {context} tokens "
        f"of context, {device}); /reset starts over, /quit or Ctrl-D ends"
    )
    return converse(reply)


def converse(reply: Callable[[list[dict[str, str]]], str]) -> dict[str, Any]:
    """The terminal loop: read a message after `you> `, print `assistant> ` and the reply."""
    import readline  # noqa: F401  (input() gets line editing and history)

    turns: list[dict[str, str]] = []
    replies = 0
    while True:
        try:
            line = input("you> ")
        except (EOFError, KeyboardInterrupt):
            print()
            break
        command = line.strip()
        if command == "/quit":
            break
        if command == "/reset":
            turns.clear()
            print("(the conversation starts over)")
            continue
        if not command:
            continue
        turns.append({"role": "user", "content": line})
        try:
            answer = reply(turns)
        except UserError as error:
            turns.pop()
            print(f"({error})")
            continue
        except KeyboardInterrupt:
            turns.pop()
            print("\n(reply interrupted)")
            continue
        print(f"assistant> {answer}")
        replies += 1
        if answer.strip():
            turns.append({"role": "assistant", "content": answer})
        else:  # the template has no empty messages: an exchange without an answer is not kept
            turns.pop()
    return {"replies": replies}
