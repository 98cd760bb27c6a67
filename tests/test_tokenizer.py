"""Encodings and BPE training: ids identical to tiktoken's own encodings, exact round trips, merges
identical to rustbpe's, and clear errors for broken vocabularies."""

from __future__ import annotations

import base64
import json
import shutil

import pytest
import rustbpe
import tiktoken

from tests.conftest import DATA
from tokenmill.tokenizer import bpe
from tokenmill.tokenizer.encodings import RANKS_DIR, STANDARD, load_encoding, load_spec, parse_ranks

TEXT = DATA / "text"
SHAKESPEARE = (TEXT / "tinyshakespeare_input.txt").read_text(encoding="utf-8")
# tiktoken's own cache layout: sha1 of each file's download URL (tiktoken/load.py), pointing at the
# shipped rank files, and for gpt2 at GPT-2's original encoder.json + vocab.bpe: an independent source.
TIKTOKEN_CACHE = {
    "6d1cbeee0f20b3d9449abfede4726ed8212e3aee": DATA / "tokenizer" / "gpt2_vocab.bpe",
    "6c7ea1a7e38e3a7f062df639a5b80947f075ffe6": DATA / "tokenizer" / "gpt2_encoder.json",
    "0ea1e91bbb3a60f729a8dc8f777fd2fc07cd8df4": RANKS_DIR / "r50k_base.tiktoken",
    "ec7223a39ce59f226a68acc30dc1af2788490e15": RANKS_DIR / "p50k_base.tiktoken",
    "9b5ad71b2ce5302211f9c61530b329a4922fc6a4": RANKS_DIR / "cl100k_base.tiktoken",
    "fb374d419588a4632f3f557e76b4b70aebbca790": RANKS_DIR / "o200k_base.tiktoken",
}
HARD_TEXTS = [
    (TEXT / "minbpe_taylorswift.txt").read_text(encoding="utf-8"),
    (TEXT / "cs336_german.txt").read_text(encoding="utf-8"),
    "日本語のテキスト、中文文本，한국어 텍스트, русский текст, ελληνικά, עברית, العربية",
    "emoji 🤖👩‍👩‍👧‍👦🏳️‍🌈 flags 🇫🇷🇯🇵 skin 👍🏽 and a lone combining mark: e\u0301",
    "control \x00\x01\x07\x1b[31m bell\r\n\ttabs\x0b\x0c and \u2028 separators \ufeff BOM",
    "   leading spaces, trailing spaces   \n\n\n  <|endoftext|> as plain text",
]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, monkeypatch_module):
    cache = tmp_path_factory.mktemp("tiktoken-cache")
    for name, source in TIKTOKEN_CACHE.items():
        shutil.copy(source, cache / name)
    monkeypatch_module.setenv("TIKTOKEN_CACHE_DIR", str(cache))
    return tiktoken.get_encoding


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.mark.parametrize("name", sorted(STANDARD))
def test_ids_equal_tiktokens_own_encoding(name, reference):
    ours, theirs = load_encoding(name), reference(name)
    for text in [SHAKESPEARE, *HARD_TEXTS]:
        assert ours.encode_ordinary(text) == theirs.encode_ordinary(text)
    assert ours.n_vocab == theirs.n_vocab
    assert ours._special_tokens == theirs._special_tokens
    assert ours.encode("<|endoftext|>", allowed_special="all") == theirs.encode(
        "<|endoftext|>", allowed_special="all"
    )


def test_known_answers_for_gpt2():
    gpt2 = load_encoding("gpt2")
    assert len(gpt2.encode_ordinary(SHAKESPEARE)) == 338_025  # nanoGPT's train + val total
    assert gpt2.encode_ordinary("Hello, world! Common Crawl WARC → text.") == [
        15496, 11, 995, 0, 8070, 327, 13132, 11837, 34, 15168, 2420, 13,
    ]  # fmt: skip
    assert gpt2.eot_token == 50256 and gpt2.n_vocab == 50257


@pytest.mark.parametrize("name", sorted(STANDARD))
def test_round_trip_is_exact(name):
    encoding = load_encoding(name)
    for text in HARD_TEXTS:
        assert encoding.decode(encoding.encode_ordinary(text)) == text


def test_a_tampered_rank_file_is_refused(tmp_path, monkeypatch):
    copy = tmp_path / "ranks"
    shutil.copytree(RANKS_DIR, copy)
    data = (copy / "r50k_base.tiktoken").read_bytes()
    (copy / "r50k_base.tiktoken").write_bytes(data.replace(b" 50255\n", b" 50254\n"))
    monkeypatch.setattr("tokenmill.tokenizer.encodings.RANKS_DIR", copy)
    with pytest.raises(ValueError, match="sha256"):
        load_spec("gpt2")


def test_unknown_names_and_missing_directories_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown encoding 'gpt5'"):
        load_spec("gpt5")
    with pytest.raises(ValueError, match="not a tokenizer directory"):
        load_spec(str(tmp_path / "nothing-here"))


def test_tie_breaking_is_the_smallest_pair():
    # ' aaa' twice: (a, a) counts 4 -> 256 'aa'; then six pairs tie at 2 and the smallest ids win:
    # (32, 256) ' aa' before (101, 108) 'el', then (104, 258) 'hel' before (108, 111) 'lo'.
    counts = bpe.count_chunks(["hello hello world aaa aaa"])
    merges = bpe.train_merges(counts, 4)
    assert merges == [(97, 97), (32, 256), (101, 108), (104, 258)]
    ranks = bpe.merges_to_ranks(merges)
    assert [token for token, rank in sorted(ranks.items(), key=lambda kv: kv[1])][256:] == [
        b"aa", b" aa", b"el", b"hel",
    ]  # fmt: skip


def test_overlapping_pairs_merge_left_to_right():
    # (a, a) occurs twice in 'aaa' and three times in 'aaaa': 5. Merging left to right gives
    # 'aaa' -> aa a and 'aaaa' -> aa aa; then (aa, a) and (aa, aa) tie at 1 and the smaller pair wins.
    assert bpe.train_merges({b"aaa": 1, b"aaaa": 1}, 3) == [(97, 97), (256, 97), (256, 256)]


@pytest.mark.parametrize(
    ("corpus", "vocab_size"), [("tinyshakespeare_input.txt", 3000), ("minbpe_taylorswift.txt", 4000)]
)
def test_merges_equal_rustbpe(corpus, vocab_size):
    text = (TEXT / corpus).read_text(encoding="utf-8")
    reference = rustbpe.Tokenizer()
    reference.train_from_iterator(iter([text]), vocab_size, pattern=bpe.GPT4_PATTERN)
    merges = bpe.train_merges(bpe.count_chunks([text]), vocab_size - 256)
    assert bpe.merges_to_ranks(merges) == dict(reference.get_mergeable_ranks())


def test_trained_tokenizer_saves_loads_and_round_trips(tmp_path):
    trained = bpe.train_bpe([SHAKESPEARE], vocab_size=1024, name="shakespeare-1k")
    assert trained.vocab_size == 1024 and trained.special_tokens == {"<|endoftext|>": 1023}
    directory = trained.save(str(tmp_path / "tok"))
    config = json.loads((tmp_path / "tok" / "tokenizer.json").read_text())
    assert config["pattern"] == bpe.GPT4_PATTERN and config["vocab_size"] == 1024
    loaded = load_encoding(directory)
    assert loaded.name == "shakespeare-1k" and loaded.n_vocab == 1024 and loaded.eot_token == 1023
    assert load_encoding(str(tmp_path / "tok" / "tokenizer.tiktoken")).n_vocab == 1024
    for text in [SHAKESPEARE[:20_000], *HARD_TEXTS]:
        assert loaded.decode(loaded.encode_ordinary(text)) == text
    ids = loaded.encode_ordinary(SHAKESPEARE)
    assert len(ids) < len(SHAKESPEARE.encode()) / 2.5  # it learned the corpus: > 2.5 bytes per token
    assert loaded.encode("<|endoftext|>", allowed_special="all") == [1023]


def test_saved_rank_file_is_tiktokens_format(tmp_path):
    trained = bpe.train_bpe([SHAKESPEARE[:50_000]], vocab_size=300)
    lines = trained.rank_file().splitlines()
    assert len(lines) == 299
    token, rank = lines[256].split()
    assert (base64.b64decode(token), int(rank)) == (
        next(t for t, r in trained.ranks.items() if r == 256),
        256,
    )
    assert (
        tiktoken.load.load_tiktoken_bpe(str(trained.save(str(tmp_path / "t")) + "/tokenizer.tiktoken"))
        == trained.ranks
    )


def test_a_vocabulary_missing_byte_tokens_is_an_error_not_a_crash(tmp_path):
    ranks = bpe.merges_to_ranks([(104, 105)])
    del ranks[b"\xff"], ranks[b"\x00"]
    broken = bpe.TrainedTokenizer("broken", bpe.GPT4_PATTERN, ranks, {"<|endoftext|>": 257})
    with pytest.raises(ValueError, match="lacks 2 of the 256 byte tokens"):
        broken.save(str(tmp_path / "broken"))
    data = b"".join(base64.b64encode(token) + b" %d\n" % rank for token, rank in ranks.items())
    with pytest.raises(ValueError, match="lacks 2 of the 256 byte tokens"):
        parse_ranks(data, "broken.tiktoken")


def test_a_rank_file_that_does_not_match_its_config_is_refused(tmp_path):
    directory = bpe.train_bpe([SHAKESPEARE[:10_000]], vocab_size=300).save(str(tmp_path / "t"))
    path = tmp_path / "t" / "tokenizer.tiktoken"
    path.write_bytes(path.read_bytes() + b"IQ== 300\n")
    with pytest.raises(ValueError, match="sha256"):
        load_encoding(directory)


def test_vocab_size_counts_bytes_merges_and_specials():
    assert bpe.num_merges_for(32_768) == 32_768 - 256 - 1
    with pytest.raises(ValueError, match="below 256 bytes"):
        bpe.num_merges_for(200)
