"""Known answers for pipeline.text: what datatrove's spaCy English tokenizer (spaCy 3.8, `spacy.blank("en")`
plus the sentencizer, tokens stripped and blank ones dropped) outputs, for the splits tokenmill reproduces.
The expected values were produced by spaCy and are written out literally: the tests need no spaCy.

Known, measured differences (rare in web text; the bench reports their effect on filter decisions):
contractions_unknown_case, cannot_gonna, abbreviations, final_period, times, units, currency,
infixes, case_change_period, not_urls, degrees, html_like, sentences:trailing_double_space,
sentences:whitespace_token, sentences:other_scripts.
"""

from __future__ import annotations

import pytest

from tokenmill.pipeline import text
from tokenmill.pipeline.text import (
    count_duplicates,
    count_sentences,
    is_symbol_word,
    split_words,
    terminal_punctuation,
)

# (rule, text, spaCy's words)
# fmt: off
WORDS = [
    # any whitespace separates, none is a word
    ("whitespace", "one  two\tthree\nfour\xa0five \n six",
     ["one", "two", "three", "four", "five", "six"]),
    # punctuation and brackets come off the ends
    ("punctuation", 'Hello, world! (Really?) [1] "Yes;" she said: no.',
     ["Hello", ",", "world", "!", "(", "Really", "?", ")", "[", "1", "]", '"', "Yes", ";", '"', "she", "said",
      ":", "no", "."]),
    # marks split one by one; a run of dots stays whole
    ("repeated_marks", "Yes!!! Really?! Wait... what?? ...and so…",
     ["Yes", "!", "!", "!", "Really", "?", "!", "Wait", "...", "what", "?", "?", "...", "and", "so", "…"]),
    # quotes of every shape
    ("quotes", "“Curly,” ‘single’ ''twice'' `code` «guillemets»",
     ["“", "Curly", ",", "”", "‘", "single", "’", "''", "twice", "''", "`", "code", "`", "«", "guillemets",
      "»"]),
    # n't splits off a known verb
    ("contractions", "don't can't won't isn't ain't shouldn't've",
     ["do", "n't", "ca", "n't", "wo", "n't", "is", "n't", "ai", "n't", "should", "n't", "'ve"]),
    # the same with a curly apostrophe
    ("contractions_curly", "Don’t can’t won’t isn’t",
     ["Do", "n’t", "ca", "n’t", "wo", "n’t", "is", "n’t"]),
    # pronoun clitics, straight and curly
    ("clitics", "it's He's we're We’re I'm I’ve they'll you'd",
     ["it", "'s", "He", "'s", "we", "'re", "We", "’re", "I", "'m", "I", "’ve", "they", "'ll", "you", "'d"]),
    # 's comes off any word; a bare apostrophe too
    ("possessive", "John's John’s JOHN'S James' the '90s",
     ["John", "'s", "John", "’s", "JOHN", "'S", "James", "'", "the", "'", "90s"]),
    # words that look like contractions stay whole
    ("not_contractions", "its Its well were shell O'Neil rock'n'roll o’clock",
     ["its", "Its", "well", "were", "shell", "O'Neil", "rock'n'roll", "o’clock"]),
    # months and US states
    ("abbreviations_states_months", "Jan. Sept. Calif. Mass. N.Y. D.C.",
     ["Jan.", "Sept.", "Calif.", "Mass.", "N.Y.", "D.C."]),
    # unlisted ones lose it
    ("abbreviations_unlisted", "Sr. etc. Fig. No. approx. Prof",
     ["Sr", ".", "etc", ".", "Fig", ".", "No", ".", "approx", ".", "Prof"]),
    # a single letter or capitals with periods keep it
    ("initials", "F. Scott Fitzgerald, J. R. R. Tolkien, p. 5, U.S. and U.K.",
     ["F.", "Scott", "Fitzgerald", ",", "J.", "R.", "R.", "Tolkien", ",", "p.", "5", ",", "U.S.", "and",
      "U.K."]),
    # a special case is found again inside a chunk
    ("abbreviation_merge", "Mr.Smith (Dr.) e.g., [i.e.]",
     ["Mr.", "Smith", "(", "Dr.", ")", "e.g.", ",", "[", "i.e.", "]"]),
    # ordinals and decades are one word
    ("ordinals_decades", "20th 1st 2nd 3rd 1980s 90's",
     ["20th", "1st", "2nd", "3rd", "1980s", "90", "'s"]),
    # numbers stay whole; a hyphen between digits splits
    ("numbers", "1,000.50 3.5 12:30 3/4 1-2 +1 -5 2x4 192.168.1.1",
     ["1,000.50", "3.5", "12:30", "3/4", "1", "-", "2", "+1", "-5", "2x4", "192.168.1.1"]),
    # a hyphen before a letter splits
    ("hyphens", "well-known COVID-19 20-year state-of-the-art x--y",
     ["well", "-", "known", "COVID-19", "20", "-", "year", "state", "-", "of", "-", "the", "-", "art", "x",
      "--", "y"]),
    # URLs stay whole, trailing punctuation comes off
    ("urls", "https://example.com/a?b=1, http://x.org/path).",
     ["https://example.com/a?b=1", ",", "http://x.org/path", ")", "."]),
    # domains (a lower-case top level) stay whole
    ("domains", "www.site.com example.org. (github.io) file.txt README.md",
     ["www.site.com", "example.org", ".", "(", "github.io", ")", "file.txt", "README.md"]),
    # e-mail addresses too
    ("emails", "john@example.com, user@mail.co.uk.",
     ["john@example.com", ",", "user@mail.co.uk", "."]),
    # symbols and emoji split off
    ("symbols", "I♥NY 😀! Hi😀 #tag *bold* © 2024 • item",
     ["I", "♥", "NY", "😀", "!", "Hi", "😀", "#", "tag", "*", "bold", "*", "©", "2024", "•", "item"]),
    # dashes
    ("dashes", "—word word— a–b -- - —",
     ["—", "word", "word", "—", "a", "–", "b", "--", "-", "—"]),
    # emoticons stay whole
    ("emoticons", ":) :-) <3 :D ;)",
     [":)", ":-)", "<3", ":D", ";)"]),
    # other scripts follow the same rules
    ("non_ascii", "naïve café. Ελλάδα. 日本語。 да,нет",
     ["naïve", "café", ".", "Ελλάδα", ".", "日本語", "。", "да", ",", "нет"]),
]
# fmt: on

# (rule, text, spaCy's sentence count)
SENTENCES = [
    ("one", "Just one sentence here", 1),
    ("two", "First sentence. Second one", 2),
    ("marks", "Really?! Yes!!! Sure.", 3),
    ("ellipsis_no_end", "Wait... what happened here", 1),
    ("ellipsis_then_end", "Wait... what? Nothing.", 2),
    ("abbreviations", "Dr. Smith met Mr. Jones at 5 p.m. on Jan. 5th.", 1),
    ("unlisted_abbreviation", "See Fig. 3 for details.", 2),
    ("initials_and_us", "U.S. troops arrived. F. Scott wrote it.", 2),
    ("domain", "Visit example.org. Then leave.", 2),
    ("domain_mid", "Visit example.org for details.", 1),
    ("quotes_after_end", '"Stop." She left. (Really.) Then', 4),
    ("double_space", "One.  Two", 2),
    ("trailing_space", "It ended. ", 1),
    ("only_punctuation_after", "Done. !!", 1),
    ("empty", "", 0),
]


@pytest.mark.parametrize(("text_", "expected"), [pytest.param(t, e, id=rule) for rule, t, e in WORDS])
def test_split_words(text_: str, expected: list[str]) -> None:
    assert split_words(text_) == expected


def test_split_words_of_a_whole_text_is_the_words_of_its_parts() -> None:
    whole = " ".join(t for _, t, _ in WORDS)
    assert split_words(whole) == [word for _, t, _ in WORDS for word in split_words(t)]


@pytest.mark.parametrize(("text_", "expected"), [pytest.param(t, e, id=rule) for rule, t, e in SENTENCES])
def test_count_sentences(text_: str, expected: int) -> None:
    assert count_sentences(text_) == expected


def test_symbol_words() -> None:
    assert is_symbol_word("...") and is_symbol_word("—") and is_symbol_word("#")
    assert not is_symbol_word("a.") and not is_symbol_word("€") and not is_symbol_word("😀")


def test_chunk_cache_rolls_over_without_changing_results(monkeypatch: pytest.MonkeyPatch) -> None:
    sample = " ".join(t for _, t, _ in WORDS)
    expected = split_words(sample)
    monkeypatch.setattr(text, "_CHUNK_CACHE_SIZE", 3)
    text._CHUNKS.clear()
    assert split_words(sample) == expected
    assert len(text._CHUNKS) <= 3


def test_count_duplicates_walks_in_order() -> None:
    assert count_duplicates(["a", "bb", "a", "bb", "bb", "c"]) == (3, 5)
    assert count_duplicates([]) == (0, 0)


def test_terminal_punctuation_is_every_sentence_terminal_code_point() -> None:
    import regex

    sentence_terminal = regex.compile(r"\p{Sentence_Terminal}")
    expected = tuple(chr(code) for code in range(0x110000) if sentence_terminal.match(chr(code)))
    assert terminal_punctuation.__wrapped__() == expected
    assert {".", "!", "?", "。", "؟", "‼"} <= set(expected) and not {",", ";", ":"} & set(expected)
