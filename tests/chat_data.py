"""A small conversation set from real text, bad rows of every reason, and a chat checkpoint, for tests.

The conversations ask about short lines of tinyshakespeare: name the line's first or last word, or
repeat it. The answers come from the question and are mostly one word, so a small model soon learns
their shape and where <|end|> goes; some open with a system message and some have two exchanges, so
every part of the template is trained on. Measured: the tiny config pretrained 300 steps on
tinyshakespeare, then `tokenmill sft --max-steps 100` on the default 1,200 conversations: held-out loss
10.07 -> 6.07 (--lr 3e-3) or 7.30 (the default lr, 1e-3); greedy replies end at <|end|> after a word or
two with --lr 3e-3 or 1e-2, not yet with 1e-3. With a few hundred conversations the model learns them
by heart and the held-out loss turns back up.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

SHAKESPEARE = Path(__file__).parent / "data" / "text" / "tinyshakespeare_input.txt"
SYSTEM = "You answer questions about lines of Shakespeare."
MESSAGES = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))


def _bare(word: str) -> str:
    return word.strip(".,;:!?'-")


def short_lines(words: tuple[int, int] = (3, 6)) -> list[str]:
    """Distinct lines of tinyshakespeare with `words` words (inclusive), speaker names left out, that
    begin and end with a word (not a dash)."""
    lines = (line.strip() for line in SHAKESPEARE.read_text().splitlines())
    wanted = (
        line
        for line in lines
        if not line.endswith(":")
        and words[0] <= len(line.split()) <= words[1]
        and _bare(line.split()[0])
        and _bare(line.split()[-1])
    )
    return list(dict.fromkeys(wanted))


def _exchange(line: str, rng: random.Random) -> list[dict[str, str]]:
    """One question about `line` and its answer: most often a one-word answer (its first or last word),
    which a small model learns to end with <|end|> first; sometimes the whole line."""
    words = line.split()
    question, answer = rng.choices(
        [
            (f"What is the first word of: {line}", _bare(words[0])),
            (f"What is the last word of: {line}", _bare(words[-1])),
            (f"Repeat after me: {line}", line),
        ],
        weights=(2, 2, 1),
    )[0]
    return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]


def conversations(count: int = 1200, seed: int = 0) -> list[dict[str, Any]]:
    """`count` rows {"messages": [...]}: a fifth open with a system message, a fifth have two exchanges."""
    rng = random.Random(seed)
    lines = short_lines()
    rows = []
    for _ in range(count):
        system = [{"role": "system", "content": SYSTEM}] if rng.random() < 0.2 else []
        exchanges = 2 if rng.random() < 0.2 else 1
        messages = system + [m for _ in range(exchanges) for m in _exchange(rng.choice(lines), rng)]
        rows.append({"messages": messages})
    return rows


def _user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def _assistant(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


def _bad_rows() -> list[tuple[str, Any]]:
    """(reason, row) for every reason a JSON row is skipped; "over the context" means more than 65
    tokens (the tiny config's window)."""
    long_reply = " ".join(short_lines((8, 12))[:8])  # about 100 gpt2 tokens
    system = {"role": "system", "content": "Be kind."}
    return [
        ("no messages", {"conversation": [_user("Hi"), _assistant("Hello")]}),
        ("no messages", {"messages": None}),
        ("no messages", [_user("Hi"), _assistant("Hello")]),
        ("not a list of messages", {"messages": "Hi"}),
        ("not a list of messages", {"messages": [_user("Hi"), "Hello"]}),
        ("unknown role", {"messages": [_user("Hi"), {"role": "bot", "content": "Hello"}]}),
        ("unknown role", {"messages": [{"content": "Hi"}, _assistant("Hello")]}),
        ("empty", {"messages": []}),
        ("empty", {"messages": [_user("Hi"), _assistant("  \n")]}),
        ("empty", {"messages": [_user("Hi"), {"role": "assistant"}]}),
        ("empty", {"messages": [{"role": "user", "content": 7}, _assistant("Hello")]}),
        ("not alternating", {"messages": [_user("Hi"), _user("Hi again"), _assistant("Hello")]}),
        ("not alternating", {"messages": [_user("Hi"), _assistant("Hello"), _user("Bye")]}),
        ("not alternating", {"messages": [_assistant("Hello"), _user("Hi"), _assistant("Hello")]}),
        ("not alternating", {"messages": [_user("Hi"), system, _assistant("Hello")]}),
        ("not alternating", {"messages": [system]}),
        ("over the context", {"messages": [_user("Recite."), _assistant(long_reply)]}),
    ]


def bad_rows() -> list[tuple[str, str]]:
    """(reason, JSONL line) for every reason a row is skipped, "not JSON" included."""
    broken = [("not JSON", '{"messages": [{"role": "user", "content": "Hi"}'), ("not JSON", "Hi there")]
    return broken + [(reason, json.dumps(row)) for reason, row in _bad_rows()]


def parquet_bad_rows() -> list[tuple[str, list[dict[str, Any]] | None]]:
    """(reason, messages) of the bad rows a Parquet column of {role, content} structs can hold."""
    return [
        (reason, row["messages"])
        for reason, row in _bad_rows()
        if isinstance(row, dict) and "messages" in row and _fits_parquet(row["messages"])
    ]


def _fits_parquet(messages: Any) -> bool:
    return messages is None or (
        isinstance(messages, list)
        and all(
            isinstance(message, dict) and all(isinstance(value, str) for value in message.values())
            for message in messages
        )
    )


def write_jsonl(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))
    return path


def write_parquet(path: Path, messages: list[list[dict[str, Any]] | None]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"messages": pa.array(messages, type=MESSAGES)}), path)
    return path


def write_conversation_set(path: Path, count: int = 1200, seed: int = 0) -> dict[str, int]:
    """The conversations and, among them, every bad row, as JSONL at `path`; returns the skipped
    counts by reason that reading it must report."""
    good = [json.dumps(row) for row in conversations(count, seed)]
    bad = bad_rows()
    lines = good[: count // 2] + [line for _, line in bad] + good[count // 2 :]
    write_jsonl(path, lines)
    expected: dict[str, int] = {}
    for reason, _ in bad:
        expected[reason] = expected.get(reason, 0) + 1
    return expected


def write_chat_checkpoint(out: Path, seed: int = 0, fine_tuned: bool = True) -> Path:
    """A `tokenmill sft`-shaped run directory holding an untrained tiny GPT with room for the chat
    tokens (its words are random), or with fine_tuned=False a base model's, without the "chat" entry."""
    import torch

    from tokenmill.tokenizer.encodings import load_encoding, load_spec
    from tokenmill.trainer import checkpoint
    from tokenmill.trainer.chat import chat_encoding, chat_token_ids
    from tokenmill.trainer.config import load_config
    from tokenmill.trainer.model import GPT, GPTConfig

    base = load_encoding("gpt2")
    config = load_config("tiny")
    # An output head of its own: a tied head's greedy choice is the last input token, over and over.
    config = replace(config, model=replace(config.model, vocab_size=50304, tie_embeddings=False))
    torch.manual_seed(seed)
    model = GPT(GPTConfig(**asdict(config.model)))
    manifest = {
        "format": "tokenmill-tokens/1",
        "tokenizer": load_spec("gpt2").describe(),
        "vocab_size": base.n_vocab,
        "eot_id": base.eot_token,
        "shards": [],
    }
    payload: dict[str, Any] = {
        "config": config.to_dict(),
        "step": 0,
        "model": model.state_dict(),
        "optimizer": {},
        "schedule": {},
        "data": {},
        "world_size": 1,
        "rng": [checkpoint.rng_state(torch.device("cpu"))],
        "manifest": manifest,
        "kind": "sft" if fine_tuned else "pretrain",
    }
    if fine_tuned:
        payload["chat"] = {"tokens": chat_token_ids(chat_encoding(base)), "base": str(out / "base")}
    checkpoint.save(out, payload)
    return out


def greedy_reply(run_dir: Path, messages: list[dict[str, str]], max_new_tokens: int) -> str:
    """The greedy reply of a chat checkpoint computed the plain way, without generate() or its KV
    cache: the whole sequence through the model at every step, until <|end|> or max_new_tokens."""
    import torch

    from tokenmill.tokenizer.encodings import load_encoding
    from tokenmill.trainer.chat import END, chat_encoding, prompt_tokens
    from tokenmill.trainer.sample import load_model

    encoding = chat_encoding(load_encoding("gpt2"))
    end = encoding.encode_single_token(END)
    model, _ = load_model(run_dir)
    tokens = prompt_tokens(messages, encoding, encoding.eot_token)
    new: list[int] = []
    with torch.no_grad():
        while len(new) < max_new_tokens and end not in new:
            logits = model(torch.tensor([tokens + new]))[0, : encoding.n_vocab]
            new.append(int(logits.argmax()))
    return encoding.decode([token for token in new if token != end])


if __name__ == "__main__":  # `make chat-demo`: python -m tests.chat_data PATH writes the 1,200 conversations
    import sys

    write_jsonl(Path(sys.argv[1]), [json.dumps(row) for row in conversations()])
