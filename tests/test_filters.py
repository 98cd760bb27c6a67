"""Known-answer tests for the FineWeb text filters: every rule just at and just past its threshold.

The thresholds are the fineweb preset's; a text built to sit exactly on a limit must pass (the rules are
strict comparisons) and one character or word more must fail with the rule's reason. The declared rules
cover every key of the preset, and moving a limit through the recipe moves each filter's decision on a
real page exactly at that page's signal value.
"""

from __future__ import annotations

import functools
import gzip
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tokenmill.pipeline.ingest import filters as declared
from tokenmill.pipeline.ingest.document import Document
from tokenmill.pipeline.ingest.filters import build_text_filters, recipe_limits, signal_columns
from tokenmill.pipeline.ingest.filters.c4 import C4Filter
from tokenmill.pipeline.ingest.filters.fineweb_quality import FineWebQualityFilter
from tokenmill.pipeline.ingest.filters.gopher_quality import GopherQualityFilter
from tokenmill.pipeline.ingest.filters.gopher_repetition import GopherRepetitionFilter, NGrams
from tokenmill.pipeline.ingest.filters.language import LanguageFilter
from tokenmill.pipeline.ingest.filters.rules import Limit, bind
from tokenmill.pipeline.ingest.output import document_schema
from tokenmill.pipeline.recipe import RecipeError, load_recipe
from tokenmill.pipeline.text import split_words

TEXT_DIR = Path(__file__).parent / "data" / "text"
# The text filters whose rules are tested here on built texts; tests/test_extract_language.py has the
# language filter's.
TEXT_FILTERS = {
    filter_class.name: filter_class
    for filter_class in declared.TEXT_FILTERS
    if filter_class is not LanguageFilter
}


def section(name: str, **overrides: Any) -> dict[str, Any]:
    table = load_recipe("fineweb").section(name)
    table.pop("enabled", None)
    table.update(overrides)
    return table


def make(name: str, all_signals: bool = False, **overrides: Any):
    return TEXT_FILTERS[name].from_section(section(name, **overrides), all_signals=all_signals)


def doc(text: str) -> Document:
    return Document(id="doc", text=text, url="https://example.com/", date="", file_path="")


def run(name: str, text: str, all_signals: bool = False, **overrides: Any) -> tuple[str | None, Document]:
    document = doc(text)
    return make(name, all_signals, **overrides)(document), document


def filler(length: int, tag: str = "w") -> str:
    """Distinct words ("w0000 w0001 ...") of exactly `length` characters, repeating no n-gram."""
    count = (length + 1) // 6
    words = [f"{tag}{i:04d}" for i in range(count)]
    words[-1] += "x" * (length - (6 * count - 1))
    text = " ".join(words)
    assert len(text) == length
    return text


# ---------------------------------------------------------------- Gopher repetition


def only_ngram_rules(top: tuple[int, ...] = (), dup: tuple[int, ...] = ()) -> dict[str, Any]:
    """Overrides keeping only the given n-gram rules (at their preset limits). In a short test text one
    long line or word is itself a large 'top n-gram', so edge tests of one rule switch the others off."""
    preset = section("gopher_repetition")
    limits = dict(zip(preset["top_ngram_sizes"], preset["top_ngram_fracs"], strict=True))
    limits |= dict(zip(preset["dup_ngram_sizes"], preset["dup_ngram_fracs"], strict=True))
    return {
        "top_ngram_sizes": list(top),
        "top_ngram_fracs": [limits[n] for n in top],
        "dup_ngram_sizes": list(dup),
        "dup_ngram_fracs": [limits[n] for n in dup],
    }


def test_gopher_repetition_empty() -> None:
    reason, document = run("gopher_repetition", "")
    assert reason == "empty"
    assert document.signals == dict.fromkeys(GopherRepetitionFilter.signal_names, 0.0)


@pytest.mark.parametrize(
    ("joiner", "reason", "reason_when_off"),
    [("\n\n", "dup_para_frac", "dup_line_frac"), ("\n", "dup_line_frac", None)],
)
def test_gopher_duplicate_paragraphs_and_lines(joiner: str, reason: str, reason_when_off: str | None) -> None:
    uniques = [filler(40, tag) for tag in "abcdef"]
    at_limit = ["x", uniques[0], "x", uniques[1], "x", uniques[2], "x", *uniques[3:]]  # 3 repeats of 10
    result, document = run("gopher_repetition", joiner.join(at_limit))
    assert result is None
    assert document.signals[f"gopher_rep_{reason}"] == 0.3
    result, document = run("gopher_repetition", joiner.join([*at_limit, "x"]))  # 4 of 11
    assert result == reason
    assert document.signals[f"gopher_rep_{reason}"] == 4 / 11
    # As in the reference, a limit of 0 turns the rule off (the signal is still written). Paragraphs of
    # one line each repeat as lines too, so the line rule catches that document next.
    result, document = run("gopher_repetition", joiner.join([*at_limit, "x"]), **{reason: 0})
    assert (result, document.signals[f"gopher_rep_{reason}"]) == (reason_when_off, 4 / 11)


@pytest.mark.parametrize(
    ("joiner", "reason", "pad"), [("\n\n", "dup_para_char_frac", 54), ("\n", "dup_line_char_frac", 57)]
)
def test_gopher_duplicate_chars(joiner: str, reason: str, pad: int) -> None:
    repeated = "Supercalifragilistic"  # 20 of 100 characters is exactly 0.20
    text = joiner.join([repeated, filler(pad // 2, "a"), filler(pad - pad // 2, "b"), repeated])
    assert len(text) == 100
    result, document = run("gopher_repetition", text, **only_ngram_rules())
    assert result is None
    assert document.signals[f"gopher_rep_{reason}"] == 0.2
    shorter = joiner.join([repeated, filler(pad // 2, "a"), filler(pad - pad // 2 - 1, "b"), repeated])
    result, document = run("gopher_repetition", shorter)
    assert result == reason
    assert document.signals[f"gopher_rep_{reason}"] == 20 / 99


def test_gopher_lines_split_on_runs_of_newlines_paragraphs_on_blank_lines() -> None:
    # "a\n\n\nb" is two lines (not three with an empty one) and two paragraphs.
    _, document = run("gopher_repetition", "same line\nsame line\n\n\nsame line")
    assert document.signals["gopher_rep_dup_line_frac"] == 2 / 3
    assert document.signals["gopher_rep_dup_para_frac"] == 0.0


def test_gopher_top_2_gram() -> None:
    def text(pad: int) -> str:  # "aa bb" four times: 5 * 4 = 20 characters
        return " ".join(
            ["aa bb", filler(25, "c"), "aa bb", filler(25, "d"), "aa bb", filler(pad, "e"), "aa bb"]
        )

    result, document = run("gopher_repetition", text(24), **only_ngram_rules(top=(2,)))
    assert (result, document.signals["gopher_rep_top_2_gram_char_frac"]) == (None, 0.2)
    result, document = run("gopher_repetition", text(23), **only_ngram_rules(top=(2,)))
    assert (result, document.signals["gopher_rep_top_2_gram_char_frac"]) == ("top_2_gram", 20 / 99)


@pytest.mark.parametrize(("n", "gram", "limit"), [(3, "aaa bb cc", 0.18), (4, "a b cc d", 0.16)])
def test_gopher_top_3_and_4_grams(n: int, gram: str, limit: float) -> None:
    pad = 100 - 2 * len(gram) - 2
    result, document = run("gopher_repetition", f"{gram} {filler(pad)} {gram}")
    assert (result, document.signals[f"gopher_rep_top_{n}_gram_char_frac"]) == (None, limit)
    result, document = run("gopher_repetition", f"{gram} {filler(pad - 1)} {gram}")
    assert result == f"top_{n}_gram"
    assert document.signals[f"gopher_rep_top_{n}_gram_char_frac"] == 2 * len(gram) / 99


def test_gopher_top_ngram_ties_go_to_the_first() -> None:
    # "aaa bb" and "bb cc" both occur twice; the first one (6 chars) counts, not the later one.
    _, document = run("gopher_repetition", f"aaa bb cc {filler(80)} aaa bb cc")
    assert document.signals["gopher_rep_top_2_gram_char_frac"] == 12 / 100


@pytest.mark.parametrize(("n", "limit"), [(5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10)])
def test_gopher_duplicated_ngrams(n: int, limit: float) -> None:
    """A passage of n words seen twice; its characters without spaces are limit * 100."""
    words = [chr(ord("a") + i) for i in range(n)]
    words[0] *= round(limit * 100) - n + 1
    passage = " ".join(words)
    only_this_rule = only_ngram_rules(dup=(n,))
    result, document = run("gopher_repetition", f"{passage} {filler(60)} {passage}", **only_this_rule)
    assert (result, document.signals[f"gopher_rep_dup_{n}_gram_char_frac"]) == (None, limit)
    result, document = run("gopher_repetition", f"{passage} {filler(59)} {passage}", **only_this_rule)
    assert result == f"duplicated_{n}_n_grams"
    assert document.signals[f"gopher_rep_dup_{n}_gram_char_frac"] == round(limit * 100) / 99


def test_gopher_duplicated_ngrams_join_without_spaces_and_skip_past_repeats() -> None:
    # As in the reference, n-grams are joined without a separator: "ab c d e f" and "a bc d e f" are the
    # same 5-gram "abcdef". After a repeat the walk jumps n words, so overlapping repeats count once.
    _, document = run("gopher_repetition", "ab c d e f zz a bc d e f", all_signals=True)
    assert document.signals["gopher_rep_dup_5_gram_char_frac"] == 6 / 24
    # 12 words: the 5-gram at 0 is new, at 1 seen (jump to 6), at 6 seen (jump past the last one, 7).
    _, document = run("gopher_repetition", "a a a a a a a a a a a a", all_signals=True)
    assert document.signals["gopher_rep_dup_5_gram_char_frac"] == 10 / 23


def test_gopher_repeated_real_paragraph() -> None:
    paragraph = (TEXT_DIR / "cs336_high_quality_wiki_reference.txt").read_text().split("\n")[2]
    result, document = run("gopher_repetition", f"{paragraph} {paragraph}")
    assert result == "duplicated_5_n_grams"
    assert document.signals["gopher_rep_dup_5_gram_char_frac"] > 0.4


def string_top_ngram_chars(words: list[str], n: int) -> int:
    """The top n-gram rule word by word, as the reference states it: the most frequent " "-joined
    n-gram (the first of equally frequent ones) times its count."""
    counts = Counter(" ".join(words[i : i + n]) for i in range(len(words) - n + 1))
    gram, count = counts.most_common(1)[0]
    return len(gram) * count


def string_duplicated_ngram_chars(words: list[str], n: int) -> int:
    """The duplicated n-gram rule word by word: "".join-ed n-grams, walking and jumping past repeats."""
    grams = ["".join(words[i : i + n]) for i in range(len(words) - n + 1)]
    seen: set[str] = set()
    repeated, index = 0, 0
    while index < len(grams):
        if grams[index] in seen:
            repeated += len(grams[index])
            index += n
        else:
            seen.add(grams[index])
            index += 1
    return repeated


def ngram_texts() -> list[list[str]]:
    """Word lists with every kind of repetition: real pages (boilerplate repeats), a real paragraph
    twice, words of one n-gram reordered (same characters, other strings), runs of one word, words that
    join into the same string at other boundaries, and texts shorter than the n-grams."""
    texts = [(TEXT_DIR / name).read_text() for name in ("cs336_low_quality_cc.txt", "cs336_address.txt")]
    paragraph = (TEXT_DIR / "cs336_high_quality_wiki_reference.txt").read_text().split("\n")[2]
    texts += [
        f"{paragraph} {paragraph}",
        "ab cd ef gh ij kl ab ef cd gh ij kl ab cd ef gh ij kl",
        "ab c d e f zz a bc d e f abc def a bcdef",
        "x y x y x y x",
        "one",
        "",
    ]
    word_lists = [split_words(text) for text in texts]
    word_lists.append(["a"] * 23)
    return word_lists


@pytest.mark.parametrize("n", [2, 3, 4, 5, 6, 7, 8, 9, 10])
def test_ngram_measures_equal_the_word_by_word_rules(n: int) -> None:
    for words in ngram_texts():
        ngrams = NGrams(words)
        assert ngrams.duplicated_chars(n) == string_duplicated_ngram_chars(words, n), words[:12]
        if len(words) >= n:
            assert ngrams.top_chars(n) == string_top_ngram_chars(words, n), words[:12]


# ---------------------------------------------------------------- Gopher quality

BASE = ["the", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog", "and"]  # stop words: the, and


def test_gopher_quality_doc_length() -> None:
    result, document = run("gopher_quality", " ".join(BASE * 5) + " .")
    assert result is None
    assert document.signals["gopher_q_n_non_symbol_words"] == 50
    assert document.signals["gopher_q_n_words"] == 51  # "." is a word, but a symbol one
    result, document = run("gopher_quality", " ".join((BASE * 5)[:49]) + " . !")
    assert (result, document.signals["gopher_q_n_non_symbol_words"]) == ("gopher_short_doc", 49)


def test_gopher_quality_long_doc() -> None:
    result, document = run("gopher_quality", " ".join(BASE * 10_000))
    assert (result, document.signals["gopher_q_n_non_symbol_words"]) == (None, 100_000)
    result, document = run("gopher_quality", " ".join(BASE * 10_000 + ["cat"]))
    assert (result, document.signals["gopher_q_n_non_symbol_words"]) == ("gopher_long_doc", 100_001)


def test_gopher_quality_empty_text() -> None:
    result, document = run("gopher_quality", "")
    assert result == "gopher_short_doc"
    assert document.signals == dict.fromkeys(GopherQualityFilter.signal_names, 0)


def test_gopher_quality_mean_word_length() -> None:
    short_words = ["the", "and", "cat", "dog", "sat"] * 10
    result, document = run("gopher_quality", " ".join(short_words))
    assert (result, document.signals["gopher_q_avg_word_length"]) == (None, 3.0)
    short_words[2] = "at"
    result, document = run("gopher_quality", " ".join(short_words))
    assert (result, document.signals["gopher_q_avg_word_length"]) == ("gopher_below_avg_threshold", 2.98)

    long_words = ["the", "and"] + ["characterizations"] * 2 + ["literature"] * 46  # 500 chars / 50 words
    result, document = run("gopher_quality", " ".join(long_words) + ".")  # the "." does not count
    assert (result, document.signals["gopher_q_avg_word_length"]) == (None, 10.0)
    long_words[-1] = "literatures"
    result, document = run("gopher_quality", " ".join(long_words))
    assert (result, document.signals["gopher_q_avg_word_length"]) == ("gopher_above_avg_threshold", 10.02)


@pytest.mark.parametrize(
    ("symbols", "signal", "reason"),
    [
        (["#"] * 7, "gopher_q_hash_word_ratio", "gopher_too_many_hashes"),
        (["...", "…"] * 3 + ["..."], "gopher_q_ellipsis_word_ratio", "gopher_too_many_ellipsis"),
    ],
)
def test_gopher_quality_symbol_ratio(symbols: list[str], signal: str, reason: str) -> None:
    words = BASE * 5 + BASE[:4]  # 54 words; with 6 symbols 6 / 60 = 0.1 exactly

    def text(k: int) -> str:
        interleaved = [f"{word} {symbol}" for word, symbol in zip(words[:k], symbols[:k], strict=True)]
        return " ".join(interleaved + words[k:])

    result, document = run("gopher_quality", text(6))
    assert (result, document.signals[signal]) == (None, 0.1)
    result, document = run("gopher_quality", text(7))
    assert (result, document.signals[signal]) == (reason, 7 / 61)


def test_gopher_quality_bullet_lines() -> None:
    def text(bullets: int) -> str:
        marks = ["- ", "• "] * 10
        return "\n".join(
            (marks[i] if i < bullets else "") + f"the fox and the dog number{i}" for i in range(20)
        )

    result, document = run("gopher_quality", text(18))
    assert (result, document.signals["gopher_q_bullet_lines_ratio"]) == (None, 0.9)
    result, document = run("gopher_quality", text(19))
    assert (result, document.signals["gopher_q_bullet_lines_ratio"]) == ("gopher_too_many_bullets", 0.95)


def test_gopher_quality_lines_ending_in_ellipsis() -> None:
    def text(ellipses: int) -> str:
        endings = ["...", "…  ", "...", "…"]
        return "\n".join(
            " ".join(BASE[6:] + BASE[:2]) + (endings[i] if i < ellipses else ".") for i in range(10)
        )

    result, document = run("gopher_quality", text(3))
    assert (result, document.signals["gopher_q_end_ellipsis_lines_ratio"]) == (None, 0.3)
    result, document = run("gopher_quality", text(4))
    assert (result, document.signals["gopher_q_end_ellipsis_lines_ratio"]) == (
        "gopher_too_many_end_ellipsis",
        0.4,
    )


def test_gopher_quality_alphabetic_words() -> None:
    result, document = run("gopher_quality", " ".join(BASE * 4 + ["1999"] * 10))
    assert (result, document.signals["gopher_q_alpha_words_ratio"]) == (None, 0.8)
    result, document = run("gopher_quality", " ".join(BASE * 4 + ["1999"] * 11))
    assert (result, document.signals["gopher_q_alpha_words_ratio"]) == (
        "gopher_below_alpha_threshold",
        40 / 51,
    )


def test_gopher_quality_stop_words_are_distinct_and_case_sensitive() -> None:
    words = ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dogs", "near", "rivers"] * 5
    result, document = run("gopher_quality", " ".join(words + ["The", "And", "OF"]))
    assert (result, document.signals["gopher_q_stop_words"]) == ("gopher_enough_stop_words", 1)
    result, document = run("gopher_quality", " ".join(words + ["of"]))
    assert (result, document.signals["gopher_q_stop_words"]) == (None, 2)


# ---------------------------------------------------------------- C4

C4_PAGE = [
    "Paris is the capital and most populous city of France.[1]",
    "Home",
    "Please enable JavaScript to view the comments.",
    "This site uses cookies to improve your experience.",
    "  It is located on the Seine river.[citation needed] It has many museums.  ",
    "The city hosted the Olympic Games in 1900 and 1924.[2][edit]",
    "Menu items here",
]


def test_c4_drops_lines_and_rewrites_the_text() -> None:
    result, document = run("c4", "\n".join(C4_PAGE))
    assert result is None
    assert document.text == (
        "Paris is the capital and most populous city of France.\n"
        "It is located on the Seine river. It has many museums.\n"
        "The city hosted the Olympic Games in 1900 and 1924.\n"
        "Menu items here"
    )
    assert document.words[-3:] == ["Menu", "items", "here"]  # the split follows the new text
    assert {name: document.signals[name] for name in C4Filter.signal_names} == {
        "c4_lines_total": 7,
        "c4_lines_dropped_too_long_word": 0,
        "c4_lines_dropped_no_terminal_punct": 0,
        "c4_lines_dropped_too_few_words": 1,
        "c4_lines_dropped_javascript": 1,
        "c4_lines_dropped_policy": 1,
        "c4_lines_lorem_ipsum": 0,
        "c4_lines_curly_bracket": 0,
        "c4_lines_kept": 4,
        "c4_sentences": 5,
    }


def test_c4_too_few_sentences_keeps_the_text() -> None:
    result, document = run("c4", "\n".join(C4_PAGE[:-1]))
    assert (result, document.signals["c4_sentences"]) == ("too_few_sentences", 4)
    assert document.text == "\n".join(C4_PAGE[:-1])


def test_c4_terminal_punctuation_rule_when_asked() -> None:
    result, document = run("c4", "\n".join(C4_PAGE), filter_no_terminal_punct=True, min_num_sentences=3)
    assert result is None
    assert document.signals["c4_lines_dropped_no_terminal_punct"] == 2  # "Home", "Menu items here"
    assert document.text.endswith("in 1900 and 1924.")
    result, document = run("c4", "Wait for it...\nThe end is near, he said.", filter_no_terminal_punct=True)
    assert document.signals["c4_lines_dropped_no_terminal_punct"] == 1


def test_c4_words_per_line_and_word_length() -> None:
    result, document = run("c4", "Two words.\nThree whole words.", min_num_sentences=1)
    assert result is None
    assert document.text == "Three whole words."
    # Words are counted before citations are removed, by whitespace, as in the reference.
    _, document = run("c4", "See [1] [2]", min_num_sentences=-1)
    assert document.text == "See"
    _, document = run("c4", f"A {'x' * 1000} word.\nA {'y' * 1001} word.", min_num_sentences=-1)
    assert document.signals["c4_lines_dropped_too_long_word"] == 1
    assert document.text.startswith("A xxx")


@pytest.mark.parametrize(
    ("bad_line", "reason"),
    [("Lorem ipsum dolor sit amet.", "lorem_ipsum"), ("Use the var x = {a: 1} form.", "curly_bracket")],
)
def test_c4_document_rules(bad_line: str, reason: str) -> None:
    text = "\n".join([*C4_PAGE, bad_line, "And one more sentence after it."])
    result, document = run("c4", text)
    assert result == reason
    assert document.text == text  # a dropped document is not rewritten
    assert document.signals["c4_lines_total"] == 9  # the counts still cover every line


def test_c4_document_rules_only_look_at_lines_that_survive() -> None:
    # A two-word lorem line is dropped as short first; a `{` in a JavaScript line goes with the line.
    text = "\n".join([*C4_PAGE, "Lorem ipsum", "Enable javascript: function f() { }"])
    assert run("c4", text)[0] is None
    # The first document rule met, line by line, is the reason.
    text = "\n".join(["Call it as f({x: 1}) here.", "Lorem ipsum dolor sit amet.", *C4_PAGE])
    result, document = run("c4", text)
    assert result == "curly_bracket"
    assert (document.signals["c4_lines_curly_bracket"], document.signals["c4_lines_lorem_ipsum"]) == (1, 1)


# ---------------------------------------------------------------- FineWeb quality


def test_fineweb_empty() -> None:
    result, document = run("fineweb_quality", " \n\t\n")
    assert result == "empty"
    assert document.signals == dict.fromkeys(FineWebQualityFilter.signal_names, 0.0)


def test_fineweb_line_punctuation() -> None:
    def text(with_period: int) -> str:
        return "\n".join(
            f"Line number {i} talks about topic {i} at length" + "." * (i < with_period) for i in range(25)
        )

    result, document = run("fineweb_quality", text(3))
    assert (result, document.signals["fineweb_q_line_punct_ratio"]) == (None, 0.12)
    result, document = run("fineweb_quality", text(2))
    assert (result, document.signals["fineweb_q_line_punct_ratio"]) == ("line_punct_ratio", 0.08)
    result, document = run("fineweb_quality", text(0), line_punct_exclude_zero=True)
    assert (result, document.signals["fineweb_q_line_punct_ratio"]) == (None, 0.0)


def test_fineweb_short_lines() -> None:
    def text(short: int) -> str:
        lines = [f"Short line number {i:03d} is here." for i in range(short)]  # exactly 30 characters
        lines += [f"Longer line number {i:03d} is here." for i in range(100 - short)]  # 31
        return "\n".join(lines)

    result, document = run("fineweb_quality", text(67))
    assert (result, document.signals["fineweb_q_short_line_ratio"]) == (None, 0.67)
    result, document = run("fineweb_quality", text(68))
    assert (result, document.signals["fineweb_q_short_line_ratio"]) == ("short_line_ratio", 0.68)


def test_fineweb_duplicate_line_chars() -> None:
    def text(last_line: int) -> str:  # 10 duplicate characters out of 1000 (newlines not counted)
        lines = (
            ["Read more."] + [filler(98, tag) for tag in "abcdefghi"] + [filler(last_line, "j"), "Read more."]
        )
        return "\n\n".join(lines)

    result, document = run("fineweb_quality", text(98))
    assert (result, document.signals["fineweb_q_char_dup_ratio"]) == (None, 0.01)
    result, document = run("fineweb_quality", text(97))
    assert (result, document.signals["fineweb_q_char_dup_ratio"]) == ("char_dup_ratio", 10 / 999)


def test_fineweb_newlines_per_word() -> None:
    lines = [f"Incomprehensibilities{i} notwithstanding." for i in range(10)]  # 3 words each
    result, document = run("fineweb_quality", "\n".join(lines))
    assert (result, document.signals["fineweb_q_new_line_ratio"]) == (None, 0.3)
    lines[-1] = lines[-1].rstrip(".")
    result, document = run("fineweb_quality", "\n".join(lines))
    assert (result, document.signals["fineweb_q_new_line_ratio"]) == ("list_ratio", 9 / 29)


# ---------------------------------------------------------------- every filter


@pytest.mark.parametrize("name", sorted(TEXT_FILTERS))
@pytest.mark.parametrize("text", ["", "x", "{ lorem ipsum }\n" * 3, "- a\n- b\n- a\n"])
def test_all_signals_written_even_when_dropping(name: str, text: str) -> None:
    _, document = run(name, text, all_signals=True)
    assert set(document.signals) == set(TEXT_FILTERS[name].signal_names)
    assert all(isinstance(value, (int, float)) for value in document.signals.values())


def _real_texts() -> list[str]:
    """Whole real pages and slices of them (kept and dropped by various rules)."""
    pages = [path.read_text() for path in sorted(TEXT_DIR.glob("*.txt"))]
    for path in sorted(TEXT_DIR.glob("*.jsonl.gz")):
        with gzip.open(path, "rt") as lines:
            pages += [json.loads(line)["text"] for line in lines]
    texts = list(pages)
    for page in pages:
        lines = page.splitlines()
        texts += ["\n".join(lines[start : start + 40]) for start in range(0, len(lines), 25)]
    return texts


@pytest.mark.parametrize("name", sorted(TEXT_FILTERS))
def test_kept_documents_get_the_same_signals_either_way(name: str) -> None:
    early, full = make(name), make(name, all_signals=True)
    kept = 0
    for text in [*_real_texts(), filler(400), " ".join(BASE * 10)]:
        early_doc, full_doc = doc(text), doc(text)
        reason = early(early_doc)
        assert reason == full(full_doc)
        if reason is None:
            kept += 1
            assert early_doc.signals == full_doc.signals
            assert set(early_doc.signals) == set(TEXT_FILTERS[name].signal_names)
        else:  # a dropped one may have fewer signals, with the same values
            assert early_doc.signals.items() <= full_doc.signals.items()
    assert kept >= 2


def test_gopher_repetition_stops_at_the_first_broken_rule_unless_all_signals() -> None:
    repeated = "A paragraph said twice, word for word."
    text = "\n\n".join([repeated, filler(60), repeated, filler(60, "v")])  # 1 of 4 paragraphs
    reason, early = run("gopher_repetition", text, dup_para_frac=0.2)
    assert reason == "dup_para_frac"
    assert list(early.signals) == ["gopher_rep_dup_para_frac"]  # nothing after the broken rule
    reason, full = run("gopher_repetition", text, all_signals=True, dup_para_frac=0.2)
    assert reason == "dup_para_frac"
    assert set(full.signals) == set(GopherRepetitionFilter.signal_names)
    assert early.signals["gopher_rep_dup_para_frac"] == full.signals["gopher_rep_dup_para_frac"] == 0.25
    # A later rule: the signals of every rule checked before it are there, the later ones are not.
    reason, early = run("gopher_repetition", f"aa bb {filler(25, 'c')} aa bb {filler(25, 'd')} aa bb aa bb")
    assert reason == "top_2_gram"
    assert list(early.signals) == list(GopherRepetitionFilter.signal_names[:5])
    # Rules run in the recipe's order of n-gram sizes, as in the reference.
    only_dup = only_ngram_rules(dup=(10, 5))
    words = "ab cd ef gh ij kl mn op qr st"
    reason, early = run("gopher_repetition", f"{words} {filler(30)} {words}", **only_dup)
    assert reason == "duplicated_10_n_grams"
    assert "gopher_rep_dup_5_gram_char_frac" not in early.signals


def test_build_text_filters_passes_all_signals() -> None:
    recipe = load_recipe()
    recipe.tables["language"]["enabled"] = False  # no model to load
    for all_signals in (False, True):
        filters = build_text_filters(recipe, all_signals=all_signals)
        assert [f.name for f in filters] == list(TEXT_FILTERS)
        repetition = filters[0]
        assert isinstance(repetition, GopherRepetitionFilter) and repetition.all_signals is all_signals


def test_signal_columns_are_prefixed_and_unique() -> None:
    columns = signal_columns()
    assert len(columns) == len(set(columns))
    prefixes = {
        "gopher_repetition": "gopher_rep_",
        "gopher_quality": "gopher_q_",
        "c4": "c4_",
        "fineweb_quality": "fineweb_q_",
    }
    for name, filter_class in TEXT_FILTERS.items():
        assert all(column.startswith(prefixes[name]) for column in filter_class.signal_names)


@pytest.mark.parametrize("name", sorted(TEXT_FILTERS))
def test_recipe_errors(name: str) -> None:
    with pytest.raises(RecipeError, match="unexpected keyword argument 'bogus'"):
        make(name, bogus=1)
    table = section(name)
    table.pop(next(iter(table)))
    with pytest.raises(RecipeError, match="missing 1 required"):
        TEXT_FILTERS[name].from_section(table)


def test_gopher_repetition_recipe_checks_ngram_lists() -> None:
    with pytest.raises(RecipeError, match="differ in length"):
        make("gopher_repetition", top_ngram_fracs=[0.2])
    with pytest.raises(RecipeError, match="must be distinct sizes among"):
        make("gopher_repetition", dup_ngram_sizes=[5, 6, 7, 8, 9, 11])
    with pytest.raises(RecipeError, match="must be distinct sizes among"):
        make("gopher_repetition", top_ngram_sizes=[2, 2, 4])


# ---------------------------------------------------------------- declared rules and order


@pytest.mark.parametrize("filter_class", declared.FILTERS, ids=lambda filter_class: filter_class.name)
def test_rules_and_settings_cover_every_key_of_the_preset(filter_class: type[declared.Filter]) -> None:
    table, rules = section(filter_class.name), filter_class.rules
    rule_keys = {rule.key for rule in rules} | {rule.per_size for rule in rules if rule.per_size}
    assert rule_keys.isdisjoint(filter_class.settings)
    assert set(table) == rule_keys | set(filter_class.settings)
    # The preset switches every rule on: one limit per rule, one per listed size for the n-gram rules.
    limits = bind(rules, filter_class.name, table)
    assert len(limits) == sum(len(table[rule.per_size]) if rule.per_size else 1 for rule in rules)
    assert len({limit.reason for limit in limits}) == len(limits)
    assert {limit.signal for limit in limits} <= set(document_schema().names)


def test_drop_stages_follow_the_filter_order() -> None:
    filter_stages = [stage for stage in declared.DROP_STAGES if stage in {f.name for f in declared.FILTERS}]
    assert filter_stages == [filter_class.name for filter_class in declared.FILTERS]
    extract = declared.DROP_STAGES.index("extract")
    assert declared.DROP_STAGES.index(declared.LANGUAGE_PRECHECK) < extract
    assert declared.DROP_STAGES[extract + 1 :] == tuple(f.name for f in declared.TEXT_FILTERS)


def test_recipe_limits_follow_the_recipe() -> None:
    recipe = load_recipe("fineweb", ["gopher_quality.min_doc_words=0", "c4.enabled=false"])
    labels = [limit.label for limit in recipe_limits(recipe.tables)]
    assert "gopher_quality.min_doc_words" not in labels and "gopher_quality.max_doc_words" in labels
    assert not any(label.startswith("c4.") for label in labels)
    assert labels.index("language.threshold") < labels.index("gopher_repetition.top_ngram_fracs[2]")
    top = [limit for limit in recipe_limits(recipe.tables) if limit.key == "top_ngram_fracs"]
    assert [(limit.signal, limit.reason, limit.value) for limit in top] == [
        ("gopher_rep_top_2_gram_char_frac", "top_2_gram", 0.20),
        ("gopher_rep_top_3_gram_char_frac", "top_3_gram", 0.18),
        ("gopher_rep_top_4_gram_char_frac", "top_4_gram", 0.16),
    ]


def first_drop(recipe_overrides: list[str], text: str) -> tuple[str, str] | None:
    """(filter, reason) of the first text filter that drops `text` under the fineweb preset with the
    overrides, or None when every filter keeps it."""
    document = doc(text)
    for text_filter in build_text_filters(load_recipe("fineweb", recipe_overrides)):
        reason = text_filter(document)
        if reason is not None:
            return text_filter.name, reason
    return None


@functools.cache
def kept_real_pages() -> list[tuple[str, Document]]:
    """The real pages and page slices that every text filter of the preset keeps: (text, the document
    after the filters, with their signals)."""
    kept = []
    for text in _real_texts():
        document = doc(text)
        if all(text_filter(document) is None for text_filter in build_text_filters(load_recipe())):
            kept.append((text, document))
    return kept


def signal_value(document: Document, signal: str) -> float:
    return document.signals[signal] if signal in document.signals else getattr(document, signal)


def set_limit(limit: Limit, value: float) -> str:
    """The `section.key=value` override that sets this limit (for a list entry, the whole list)."""
    if limit.index is None:
        return f"{limit.section}.{limit.key}={value!r}"
    values = load_recipe().section(limit.section)[limit.key]
    values[limit.index] = value
    return f"{limit.section}.{limit.key}={json.dumps(values)}"


PRESET_LIMITS = recipe_limits(load_recipe().tables)


def keep_and_drop(limit: Limit, v: float) -> tuple[float, float]:
    """(the limit that keeps a document whose signal is v, the one that drops it): strict comparisons
    keep v itself on the keeping side, "<=" on the dropping side; the other value is the next one the
    recipe can hold: the float next to v, or the next whole number for a count."""
    preset = load_recipe().section(limit.section)[limit.key]
    whole = isinstance(preset[limit.index] if limit.index is not None else preset, int)
    down = v - 1 if whole else math.nextafter(v, -math.inf)
    up = v + 1 if whole else math.nextafter(v, math.inf)
    return {">": (v, down), "<": (v, up), "<=": (down, v)}[limit.drop_when]


def admitted(overrides: list[str]) -> bool:
    """Whether the recipe takes these values (its declared types and ranges)."""
    try:
        load_recipe("fineweb", overrides)
    except RecipeError:
        return False
    return True


@pytest.mark.slow  # every real page through every filter, for each of the preset's limits
@pytest.mark.parametrize(
    "limit", PRESET_LIMITS, ids=[f"{limit.label}:{limit.reason}" for limit in PRESET_LIMITS]
)
def test_a_recipe_limit_moves_the_decision_on_a_real_page(limit: Limit) -> None:
    """A real page the preset keeps, with a non-zero value v of the rule's signal (and limits around v
    that the recipe's ranges admit): with the limit moved onto v this rule keeps it, one step further
    this rule drops it.

    Two Gopher rules share one key (max_symbol_word_ratio); the page then has zero for the earlier one,
    and at v the later one may drop it, which shows that this rule, checked before, held."""
    same_key = [other for other in PRESET_LIMITS if other.label == limit.label]
    earlier, later = same_key[: same_key.index(limit)], same_key[same_key.index(limit) + 1 :]
    text, keep, drop = page_for(limit, earlier)
    assert first_drop([set_limit(limit, keep)], text) in [None, *((o.section, o.reason) for o in later)]
    assert first_drop([set_limit(limit, drop)], text) == (limit.section, limit.reason)


def page_for(limit: Limit, earlier: list[Limit]) -> tuple[str, float, float]:
    """The first kept real page with a non-zero value of the rule's signal (zero for the earlier rules
    of the same key) whose keeping and dropping limits the recipe admits: (text, keep, drop)."""
    for text, document in kept_real_pages():
        value = signal_value(document, limit.signal)
        if value == 0 or any(signal_value(document, other.signal) != 0 for other in earlier):
            continue
        keep, drop = keep_and_drop(limit, value)
        if admitted([set_limit(limit, keep), set_limit(limit, drop)]):
            return text, keep, drop
    raise AssertionError(f"no real page moves {limit.label}")
