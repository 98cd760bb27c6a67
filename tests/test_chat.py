"""The chat template (ids, tokens and mask of a known conversation), reading conversation sets (every
bad row counted, every row accounted for, one split whatever the row order or file format), keeping a
chat within the context, and `tokenmill chat` on a real (untrained) checkpoint."""

from __future__ import annotations

import gzip
import io
import json
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.chat_data import (
    conversations,
    greedy_reply,
    parquet_bad_rows,
    write_chat_checkpoint,
    write_conversation_set,
    write_jsonl,
    write_parquet,
)
from tokenmill.jobs import cli
from tokenmill.jobs.stages.chat import converse
from tokenmill.pipeline.errors import UserError
from tokenmill.pipeline.storage import S3Options
from tokenmill.tokenizer.encodings import load_encoding
from tokenmill.trainer.chat import (
    CHAT_TOKENS,
    REASONS,
    BadConversation,
    ConversationSet,
    chat_encoding,
    encode_conversation,
    fit_history,
    load_conversations,
    prompt_tokens,
)

GPT2 = load_encoding("gpt2")
CHAT = chat_encoding(GPT2)
EOT, SYSTEM, USER, ASSISTANT, END = 50256, 50257, 50258, 50259, 50260
WINDOW = 65  # the tiny config's block_size + 1


def _load(uri: str | Path, holdout: float = 0.1, seed: int = 0) -> ConversationSet:
    return load_conversations(str(uri), CHAT, EOT, WINDOW, holdout, seed, S3Options())


def _key(example: tuple[np.ndarray, np.ndarray]) -> tuple[bytes, bytes]:
    return example[0].tobytes(), example[1].tobytes()


def _same(first: ConversationSet, second: ConversationSet) -> None:
    assert [_key(e) for e in first.train] == [_key(e) for e in second.train]
    assert [_key(e) for e in first.heldout] == [_key(e) for e in second.heldout]
    assert (first.skipped, first.rows) == (second.skipped, second.rows)


@pytest.mark.parametrize(("name", "first"), [("gpt2", 50257), ("cl100k_base", 100277)])
def test_chat_tokens_follow_the_base_vocabulary_and_round_trip(name: str, first: int) -> None:
    base = load_encoding(name)
    chat = chat_encoding(base)
    assert chat.name == f"{name}-chat" and chat.n_vocab == base.n_vocab + 4
    assert [chat.encode_single_token(token) for token in CHAT_TOKENS] == [
        first,
        first + 1,
        first + 2,
        first + 3,
    ]
    text = "<|user|>To be, or not to be<|end|><|assistant|>that is the question<|end|><|endoftext|>"
    tokens = chat.encode(text, allowed_special="all")
    assert chat.decode(tokens) == text
    assert tokens[0] == first + 1 and tokens[-1] == base.eot_token
    plain = "To be, or not to be: that is the question."
    assert chat.encode_ordinary(plain) == base.encode_ordinary(plain)  # every base id keeps its meaning


def test_a_known_conversation_has_its_tokens_and_mask() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello there"},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4"},
    ]
    tokens, mask = encode_conversation(messages, CHAT, EOT)
    assert tokens.tolist() == [
        EOT,
        *(SYSTEM, 3856, 4506, 13, END),
        *(USER, 17250, END),
        *(ASSISTANT, 15496, 612, END),
        *(USER, 2061, 318, 362, 10, 17, 30, END),
        *(ASSISTANT, 19, END),
    ]
    trained = [token for token, target in zip(tokens.tolist(), mask.tolist(), strict=True) if target]
    assert trained == [15496, 612, END, 19, END]  # the assistant's words and the <|end|> closing them
    assert mask.tolist() == [False] * 9 + [False, True, True, True] + [False] * 8 + [False, True, True]
    prompt = prompt_tokens(messages[:4], CHAT, EOT)
    assert prompt == tokens[: len(prompt)].tolist() and prompt[-1] == ASSISTANT
    with pytest.raises(BadConversation, match="over the context"):
        encode_conversation(messages, CHAT, EOT, max_tokens=len(tokens) - 1)
    assert len(encode_conversation(messages, CHAT, EOT, max_tokens=len(tokens))[0]) == len(tokens)


def test_every_bad_row_is_counted_by_reason_and_every_row_accounted_for(tmp_path: Path) -> None:
    expected = write_conversation_set(tmp_path / "chats.jsonl", count=60)
    assert sorted(expected) == sorted(REASONS)  # the set has a bad row of every reason
    loaded = _load(tmp_path / "chats.jsonl")
    assert loaded.skipped == expected
    assert loaded.rows == 60 + sum(expected.values())
    assert loaded.rows == len(loaded.train) + len(loaded.heldout) + sum(loaded.skipped.values())
    assert 1 <= len(loaded.heldout) <= 20
    assert all(len(tokens) <= WINDOW and tokens[0] == EOT for tokens, _ in loaded.train + loaded.heldout)


def test_the_split_is_stable_under_reordering_and_follows_the_seed(tmp_path: Path) -> None:
    rows = [json.dumps(row) for row in conversations(200)]
    shuffled = random.Random(1).sample(rows, len(rows))
    first = _load(write_jsonl(tmp_path / "a.jsonl", rows), holdout=0.2)
    second = _load(write_jsonl(tmp_path / "b.jsonl", shuffled), holdout=0.2)
    assert {_key(e) for e in first.heldout} == {_key(e) for e in second.heldout}
    assert {_key(e) for e in first.train} == {_key(e) for e in second.train}
    assert 20 <= len(first.heldout) <= 60  # 40 expected
    other_seed = _load(tmp_path / "a.jsonl", holdout=0.2, seed=1)
    assert {_key(e) for e in other_seed.heldout} != {_key(e) for e in first.heldout}


def test_small_sets_keep_one_conversation_on_each_side(tmp_path: Path) -> None:
    two = _load(write_jsonl(tmp_path / "two.jsonl", [json.dumps(row) for row in conversations(2)]))
    assert (len(two.train), len(two.heldout)) == (1, 1)
    one = _load(write_jsonl(tmp_path / "one.jsonl", [json.dumps(row) for row in conversations(1)]))
    assert (len(one.train), len(one.heldout)) == (1, 0)
    twins = _load(write_jsonl(tmp_path / "twins.jsonl", [json.dumps(conversations(1)[0])] * 3))
    assert (len(twins.train), len(twins.heldout)) == (3, 0)  # copies never sit on both sides
    none = _load(tmp_path / "two.jsonl", holdout=0)
    assert (len(none.train), len(none.heldout)) == (2, 0)
    bad = write_jsonl(tmp_path / "bad.jsonl", ['{"messages": []}', "not json"])
    with pytest.raises(UserError, match=r"no conversation left to train on \(2 rows: .*1 not JSON, 1 empty"):
        _load(bad)


def test_jsonl_gzip_parquet_and_a_directory_read_the_same(tmp_path: Path) -> None:
    good = [row["messages"] for row in conversations(80)]
    bad = [messages for _, messages in parquet_bad_rows()]
    assert {reason for reason, _ in parquet_bad_rows()} == set(REASONS) - {
        "not JSON",
        "not a list of messages",
    }
    everything = good[:40] + bad + good[40:]
    lines = [json.dumps({"messages": messages}) for messages in everything]
    plain = _load(write_jsonl(tmp_path / "chats.jsonl", lines))
    assert plain.rows == len(everything) and sum(plain.skipped.values()) == len(bad)
    (tmp_path / "chats.jsonl.gz").write_bytes(gzip.compress("".join(f"{line}\n" for line in lines).encode()))
    _same(plain, _load(tmp_path / "chats.jsonl.gz"))
    _same(plain, _load(write_parquet(tmp_path / "chats.parquet", everything)))
    write_parquet(tmp_path / "parts" / "part-0.parquet", everything[:50])
    write_jsonl(tmp_path / "parts" / "part-1.jsonl", lines[50:])
    (tmp_path / "parts" / "_SUCCESS").write_text("")
    _same(plain, _load(tmp_path / "parts"))


def test_unreadable_inputs_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no conversations at"):
        _load(tmp_path / "missing")
    (tmp_path / "chats.csv").write_text("role,content\n")
    with pytest.raises(UserError, match="neither JSONL nor Parquet"):
        _load(tmp_path / "chats.csv")
    pq.write_table(pa.table({"text": ["To be, or not to be"]}), tmp_path / "text.parquet")
    with pytest.raises(UserError, match="text.parquet has no column messages"):
        _load(tmp_path / "text.parquet")


def _turns(*texts: str) -> list[dict[str, str]]:
    roles = ("user", "assistant")
    return [{"role": roles[index % 2], "content": text} for index, text in enumerate(texts)]


def test_fit_history_drops_the_oldest_exchanges_first_and_keeps_the_system_message() -> None:
    system = "Be brief."
    turns = _turns("First question here", "First answer", "Second question", "Second answer", "Newest")
    whole = len(prompt_tokens([{"role": "system", "content": system}, *turns], CHAT, EOT))
    assert fit_history(system, turns, CHAT, EOT, whole)[1:] == turns
    one_dropped = fit_history(system, turns, CHAT, EOT, whole - 1)
    assert one_dropped == [{"role": "system", "content": system}, *turns[2:]]
    newest_only = fit_history(system, turns, CHAT, EOT, len(prompt_tokens(one_dropped, CHAT, EOT)) - 1)
    assert newest_only == [{"role": "system", "content": system}, turns[-1]]
    # [EOT, USER, "New", "est", END, ASSISTANT], and with [SYSTEM, "Be", " brief", ".", END]
    assert fit_history(None, turns, CHAT, EOT, 6) == turns[-1:]
    with pytest.raises(UserError, match="^the message takes 6 tokens; this model reads at most 5 before"):
        fit_history(None, turns, CHAT, EOT, 5)
    with pytest.raises(UserError, match="^the message with the system message takes 11 tokens"):
        fit_history(system, turns, CHAT, EOT, 10)


def test_the_chat_loop_keeps_the_history_and_starts_over_on_reset(monkeypatch, capsys) -> None:
    seen: list[list[dict[str, str]]] = []
    answers = iter(["Hello", "", "Fine"])

    def reply(turns: list[dict[str, str]]) -> str:
        seen.append([dict(turn) for turn in turns])
        if turns[-1]["content"] == "a long message":
            raise UserError("the message takes 99 tokens")
        return next(answers)

    typed = "Hi\n\n   \nSilence?\na long message\n/reset\nHow are you?\n"  # then Ctrl-D
    monkeypatch.setattr("sys.stdin", io.StringIO(typed))
    assert converse(reply) == {"replies": 3}
    assert seen == [
        _turns("Hi"),
        _turns("Hi", "Hello", "Silence?"),
        _turns("Hi", "Hello", "a long message"),  # the empty reply's exchange was not kept
        _turns("How are you?"),
    ]
    out = capsys.readouterr().out
    assert "assistant> Hello\n" in out and "(the message takes 99 tokens)\n" in out
    assert "(the conversation starts over)\n" in out and out.endswith("assistant> Fine\nyou> \n")


@pytest.fixture(scope="module")
def chat_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_chat_checkpoint(tmp_path_factory.mktemp("chat"))


def test_prompt_prints_the_reply_alone(chat_dir: Path, capsys) -> None:
    options = ["--prompt", "Hi", "--temperature", "0", "--max-new-tokens", "6"]
    assert cli.main(["chat", "--checkpoint", str(chat_dir), *options]) == 0
    expected = greedy_reply(chat_dir, _turns("Hi"), 6)
    assert capsys.readouterr().out == expected + "\n"


def test_an_interactive_chat_on_piped_input(chat_dir: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("Hi\n" + "word " * 60 + "\n/reset\nHi\n/quit\n"))
    argv = ["chat", "--checkpoint", str(chat_dir), "--temperature", "0", "--max-new-tokens", "5"]
    assert cli.main([*argv, "--system", "Be brief."]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (
        f"tokenmill chat: {chat_dir} (6.5M parameters, 64 tokens of context, cpu); "
        "/reset starts over, /quit or Ctrl-D ends"
    )
    reply = greedy_reply(chat_dir, [{"role": "system", "content": "Be brief."}, *_turns("Hi")], 5)
    assert out[1:] == [
        f"you> assistant> {reply}",
        "you> (the message with the system message takes 70 tokens; this model reads at most 59 before "
        "its reply: shorten it)",
        "you> (the conversation starts over)",
        f"you> assistant> {reply}",
        "you> ",
    ]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda out: out, "is not a `tokenmill train` or `tokenmill sft` output directory"),
        (
            lambda out: write_chat_checkpoint(out, fine_tuned=False),
            "is a base model: fine-tune it with tokenmill sft first",
        ),
    ],
)
def test_chat_refuses_what_is_not_a_fine_tuned_run_in_one_line(
    tmp_path: Path, capsys, make, message: str
) -> None:
    run_dir = make(tmp_path)
    assert cli.main(["chat", "--checkpoint", str(run_dir), "--prompt", "Hi"]) == cli.EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("tokenmill chat: error: ") and message in err


def test_blank_prompt_or_system_is_refused(chat_dir: Path, capsys) -> None:
    for option in ("--prompt", "--system"):
        assert cli.main(["chat", "--checkpoint", str(chat_dir), option, "  "]) == cli.EXIT_USER_ERROR
        assert f"{option} is empty" in capsys.readouterr().err
