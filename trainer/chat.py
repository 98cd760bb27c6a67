"""Conversations: the chat template, its four special tokens, and reading conversation sets for SFT.

A base model becomes an assistant by fine-tuning on conversations laid out in one template, the one
`tokenmill sft` trains on and `tokenmill chat` prompts with:

    [EOT] + for each message: [<|role|>] + encode_ordinary(content) + [<|end|>]

The role tokens `<|system|>`, `<|user|>`, `<|assistant|>` and the closing `<|end|>` are appended to
the base tokenizer at ids n_vocab + 0..3 (gpt2: 50257, 50258, 50259, 50260), so every base id keeps its
meaning and a base checkpoint is extended, not retrained: its embedding already has rows for them, as
the trainer rounds the vocabulary up to a multiple of 64 (50304 for gpt2). Only the assistant's words
and the `<|end|>` that closes each assistant message are trained targets: the model learns to answer
and to stop, never to imitate the user.

Conversation sets are JSONL (`.jsonl`, `.json`, gzipped or not) or Parquet rows with a "messages"
column in the common chat format: [{"role": "system" | "user" | "assistant", "content": str}, ...].
A row that cannot be trained on is counted under one reason (REASONS) and skipped.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np
import tiktoken

from tokenmill.pipeline.errors import UserError
from tokenmill.pipeline.storage import S3Options
from tokenmill.pipeline.storage.rows import NOT_JSON, column_values, dataset_files

ROLE_TOKENS = {"system": "<|system|>", "user": "<|user|>", "assistant": "<|assistant|>"}
END = "<|end|>"
CHAT_TOKENS = (*ROLE_TOKENS.values(), END)  # in id order: base n_vocab + 0..3
REASONS = (
    "not JSON",
    "no messages",
    "not a list of messages",
    "unknown role",
    "empty",
    "not alternating",
    "over the context",
)

Messages = list[dict[str, str]]
Example = tuple[np.ndarray, np.ndarray]  # tokens (int32) and the mask of trained targets (bool)


class BadConversation(ValueError):
    """A row that cannot be trained on; `reason` is one of REASONS, the key it is counted under."""

    def __init__(self, reason: str) -> None:
        if reason not in REASONS:
            raise ValueError(f"{reason!r} is not one of {REASONS}")
        super().__init__(reason)
        self.reason = reason


@cache
def chat_encoding(base: tiktoken.Encoding) -> tiktoken.Encoding:
    """`base` (its ranks, split pattern and special tokens) plus CHAT_TOKENS at base.n_vocab + 0..3,
    named base.name + "-chat". Built once per base encoding."""
    taken = [name for name in CHAT_TOKENS if name in base.special_tokens_set]
    if taken:
        raise ValueError(f"encoding {base.name!r} already has {', '.join(taken)}")
    added = {name: base.n_vocab + offset for offset, name in enumerate(CHAT_TOKENS)}
    return tiktoken.Encoding(
        base.name + "-chat",
        pat_str=base._pat_str,  # tiktoken's documented way to extend an encoding
        mergeable_ranks=base._mergeable_ranks,
        special_tokens={**base._special_tokens, **added},
    )


def chat_token_ids(encoding: tiktoken.Encoding) -> dict[str, int]:
    """{"<|system|>": id, ...} of a chat encoding: what an SFT checkpoint records under "chat"."""
    return {name: encoding.encode_single_token(name) for name in CHAT_TOKENS}


def check_messages(messages: Any, last_role: str) -> None:
    """BadConversation with the first reason that applies (in REASONS order) unless `messages` follow
    the template: non-empty messages, an optional system message first, then user and assistant in
    turn, ending with `last_role`."""
    if not isinstance(messages, list) or not all(isinstance(message, dict) for message in messages):
        raise BadConversation("not a list of messages")
    if not all(isinstance(role := message.get("role"), str) and role in ROLE_TOKENS for message in messages):
        raise BadConversation("unknown role")
    contents = [message.get("content") for message in messages]
    if not messages or not all(isinstance(content, str) and content.strip() for content in contents):
        raise BadConversation("empty")
    roles = [message["role"] for message in messages]
    turns = roles[1:] if roles[0] == "system" else roles
    expected = ["user", "assistant"] * (len(turns) // 2 + 1)
    if not turns or turns != expected[: len(turns)] or turns[-1] != last_role:
        raise BadConversation("not alternating")


def _message_tokens(message: dict[str, Any], encoding: tiktoken.Encoding) -> list[int]:
    role = encoding.encode_single_token(ROLE_TOKENS[message["role"]])
    return [role, *encoding.encode_ordinary(message["content"]), encoding.encode_single_token(END)]


def encode_conversation(
    messages: Any, encoding: tiktoken.Encoding, eot_id: int, max_tokens: int | None = None
) -> Example:
    """The conversation's tokens in the template and the mask of its trained targets: True at the
    assistant's content tokens and the <|end|> closing each assistant message (so targets =
    tokens[1:] with -1 where mask[1:] is False). `encoding` is a chat_encoding; `max_tokens` (the
    longest conversation one training window holds) makes a longer one "over the context"."""
    check_messages(messages, last_role="assistant")
    tokens, mask = [eot_id], [False]
    for message in messages:
        ids = _message_tokens(message, encoding)
        tokens += ids
        mask += [False] + [message["role"] == "assistant"] * (len(ids) - 1)
    if max_tokens is not None and len(tokens) > max_tokens:
        raise BadConversation("over the context")
    return np.array(tokens, dtype=np.int32), np.array(mask, dtype=bool)


def prompt_tokens(messages: Any, encoding: tiktoken.Encoding, eot_id: int) -> list[int]:
    """The conversation so far (ending with a user message) and the <|assistant|> that opens the
    reply: what generation continues."""
    check_messages(messages, last_role="user")
    tokens = [eot_id]
    for message in messages:
        tokens += _message_tokens(message, encoding)
    return [*tokens, encoding.encode_single_token(ROLE_TOKENS["assistant"])]


def fit_history(
    system: str | None, turns: Messages, encoding: tiktoken.Encoding, eot_id: int, budget: int
) -> Messages:
    """The messages to prompt with: the system message (if any) and the latest `turns` (user and
    assistant in turn, ending with the user's newest message), the oldest user/assistant pairs dropped
    until the prompt is at most `budget` tokens (the context less the room kept for the reply).
    UserError if the newest message does not fit even alone."""
    opening = [{"role": "system", "content": system}] if system else []
    kept = list(turns)
    while (size := len(prompt_tokens(opening + kept, encoding, eot_id))) > budget:
        if len(kept) == 1:
            raise UserError(
                f"the message{' with the system message' if opening else ''} takes {size} tokens; "
                f"this model reads at most {budget} before its reply: shorten it"
            )
        kept = kept[2:]
    return opening + kept


def read_conversations(uri: str, s3: S3Options) -> Iterator[Any]:
    """Each row's "messages" value, in order, from a file or from every file of a directory (or S3
    prefix) in name order (pipeline/storage/rows.py). A row that is not JSON or has no "messages" comes
    as a BadConversation in its place, to be counted; a Parquet file without the column is a UserError
    (it is not a conversation set)."""
    for file in dataset_files(uri, s3, "conversations"):
        for messages in column_values(file, "messages", s3):
            if messages is NOT_JSON:
                yield BadConversation("not JSON")
            else:
                yield BadConversation("no messages") if messages is None else messages


@dataclass
class ConversationSet:
    """A conversation set encoded: every row is in `train`, in `heldout` or counted in `skipped`."""

    train: list[Example] = field(default_factory=list)
    heldout: list[Example] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> rows
    rows: int = 0

    def describe(self) -> str:
        skipped = ", ".join(f"{count} {reason}" for reason, count in self.skipped.items()) or "none"
        kept = f"{len(self.train)} to train on, {len(self.heldout)} held out"
        return f"{self.rows} rows: {kept}, skipped {skipped}"


def _holdout_key(tokens: np.ndarray, seed: int) -> int:
    """A number drawn from the conversation's content and the seed alone, so the split does not
    depend on row order and identical conversations always land on the same side."""
    digest = hashlib.sha256(seed.to_bytes(8, "big", signed=True) + tokens.tobytes()).digest()
    return int.from_bytes(digest[:8], "big")


def load_conversations(
    uri: str,
    encoding: tiktoken.Encoding,
    eot_id: int,
    max_tokens: int,
    holdout: float,
    seed: int,
    s3: S3Options,
) -> ConversationSet:
    """Every conversation of `uri` encoded (encode_conversation), those whose content key falls in the
    `holdout` fraction held out: at least one when holdout > 0 and two or more conversations differ,
    never all of them. Both sides keep file order. UserError when nothing is left to train on."""
    if not 0 <= holdout < 1:
        raise ValueError(f"holdout {holdout} must lie in [0, 1)")
    result, skipped, keyed = ConversationSet(), Counter[str](), []
    for messages in read_conversations(uri, s3):
        result.rows += 1
        if isinstance(messages, BadConversation):
            skipped[messages.reason] += 1
            continue
        try:
            tokens, mask = encode_conversation(messages, encoding, eot_id, max_tokens)
        except BadConversation as bad:
            skipped[bad.reason] += 1
            continue
        keyed.append((_holdout_key(tokens, seed), (tokens, mask)))
    result.skipped = {reason: skipped[reason] for reason in REASONS if skipped[reason]}
    if not keyed:
        raise UserError(f"{uri}: no conversation left to train on ({result.describe()})")
    keys = sorted({key for key, _ in keyed})
    held = sum(key < holdout * 2**64 for key in keys)
    held = min(max(held, 1 if holdout > 0 else 0), len(keys) - 1)
    threshold = keys[held - 1] if held else -1
    result.train = [example for key, example in keyed if key > threshold]
    result.heldout = [example for key, example in keyed if key <= threshold]
    return result
