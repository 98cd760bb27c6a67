"""Word and sentence splitting shared by every filter.

FineWeb's reference (datatrove) splits English with spaCy's tokenizer, which costs more than the rest of
a filter chain. One regex reproduces the splits that move the Gopher, C4 and FineWeb rules, as spaCy's
English tokenizer makes them (known answers in tests/test_text.py): punctuation, quotes, brackets and
symbols stand alone; a run of dots is one token; `n't`/`n’t` and the clitics `'s 're 've 'll 'd 'm` split
off (`do|n't`, `it|'s`, `can|not`); URLs, domains, e-mail addresses, numbers (`1,000.5`, `12:30`),
ordinals and decades (`20th`, `1980s`), initials (`F.`, `U.S.`) and common abbreviations (`Dr.`, `e.g.`,
`Jan.`) stay whole; a hyphen or slash between letters splits (`well|-|known`, `either|/|or`). The bench
measures the agreement of every filter's decisions with datatrove's spaCy-based ones.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from array import array
from collections.abc import Iterable
from functools import lru_cache

# Abbreviations that keep their period in spaCy's English tokenizer (titles, months, company forms).
_ABBREVIATIONS = (
    "Mr|Mrs|Ms|Dr|St|Jr|Inc|Ltd|Co|Corp|vs|Mt|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec"
    "|Ala|Ariz|Ark|Calif|Colo|Conn|Del|Fla|Ga|Ill|Ind|Kan|Ky|La|Md|Mass|Mich|Minn|Miss|Mo|Neb|Nev|Okla"
    "|Ore|Pa|Tenn|Va|Wash|Wis"
)
_UNITS_AND_TIMES = r"(?:am|pm|a\.m\.|p\.m\.|km|kg|mg|cm|mm|m|g|mb|gb|kb|ft|lb|mph|hz|ml)"
_CLITIC = r"[’'](?:[sS]|re|ve|ll|d|m)\b"

_WORD_RE = re.compile(
    rf"""
    (?:https?://|www\.)[^\s<>"]*[^\s<>".,;:!?)\]'’]  # URLs stay whole, trailing punctuation comes off
    | [\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[a-z]{{2,}}     # e-mail addresses
    | (?:{_ABBREVIATIONS})\.                        # listed abbreviations keep their period
    | (?:[^\W\d_]\.){{2,}}                          # U.S., e.g., a.m.
    | \b[^\W\d_]\.(?!\w)                            # initials: F. Scott, p. 5
    | \b[^\W\d_]+(?=n[’']t\b) | n[’']t\b           # do|n't, ca|n't (DON'T stays whole)
    | \b(?i:can)(?=not\b)                           # can|not
    | {_CLITIC}                                     # clitics split off their word
    | [:;]-?[()DPp](?!\w) | <3                      # emoticons
    | (?<![\w.])[+-]?\d+(?=(?-i:{_UNITS_AND_TIMES})\b)  # 10|km, 3|pm
    | (?<![\w.])[+-]?\d+(?:[.,:/]\d+)*(?:st|nd|rd|th|s)?(?!\w)  # 1,000.5  12:30  20th  1980s
    | [^\W\d_]\w*(?:-\d\w*)+                         # COVID-19
    | \w+(?:[’'](?!(?:[sS]|re|ve|ll|d|m)\b)\w+)*(?:\.(?![A-Z])\w+)*  # words: O'Neil, example.org, v1.2
    | \.{{2,}} | -{{2,}} | ''                         # runs of dots or hyphens, a doubled quote
    | \S                                           # any other character on its own
    """,
    re.VERBOSE,
)

_ASCII_SYMBOLS = frozenset("$+<=>^`|~")

# Characters that end a sentence for spaCy's rule-based sentencizer (its default punct_chars, abridged
# to the scripts lid.176 keeps in practice; the filters only ever see `language == en` text).
SENTENCE_END = frozenset(".!?։؟۔܀܁܂।॥၊။።፧፨᙮᠃᠉᥄᥅᪨᪩᪪᪫᭚᭛᭞᭟᰻᰼᱾᱿‼‽⁇⁈⁉⸮⸼꓿꘎꘏꛳꛷꡶꡷꣎꣏꤯꧈꧉꩝꩞꩟꫰꫱꯫﹒﹖﹗！．？｡。")


_CHUNKS: dict[str, list[str]] = {}
_CHUNK_CACHE_SIZE = 200_000


def split_words(text: str) -> list[str]:
    """Split text into word tokens (see the module docstring for the rules).

    Like spaCy, whitespace splits first; chunks repeat (Zipf), so each distinct chunk is split by the
    regex once and then looked up, which makes the split ~10x cheaper on real text."""
    words: list[str] = []
    for chunk in text.split():
        tokens = _CHUNKS.get(chunk)
        if tokens is None:
            if len(_CHUNKS) >= _CHUNK_CACHE_SIZE:
                _CHUNKS.clear()
            tokens = _CHUNKS[chunk] = _WORD_RE.findall(chunk)
        words.extend(tokens)
    return words


@lru_cache(maxsize=65536)
def is_punctuation_char(char: str) -> bool:
    """Unicode punctuation, ASCII symbols and control characters: what a 'symbol word' is made of."""
    code = ord(char)
    if code < 32 or 127 <= code < 160:
        return True
    return char in _ASCII_SYMBOLS or unicodedata.category(char).startswith("P")


def is_symbol_word(word: str) -> bool:
    return all(is_punctuation_char(char) for char in word)


@lru_cache(maxsize=1)
def terminal_punctuation() -> tuple[str, ...]:
    """Every Unicode Sentence_Terminal character, as a tuple for `str.endswith`, in code point order.

    Every Python worker builds it at start-up: one regex scan over a string of all code points (made
    from their UTF-32 bytes) takes ~30 ms, where testing the code points one by one took ~300 ms."""
    import regex

    code_units = array("I", range(0x110000)).tobytes()  # 4-byte unsigned ints in the machine's byte order
    every_code_point = code_units.decode(f"utf-32-{sys.byteorder[0]}e", errors="surrogatepass")
    return tuple(regex.findall(r"\p{Sentence_Terminal}", every_code_point))


def count_sentences(text: str) -> int:
    """Sentences as spaCy's sentencizer counts them: a new one starts at the first non-punctuation
    token after a sentence-ending token."""
    words = split_words(text)
    if not words:
        return 0
    sentences, seen_end = 1, False
    for word in words:
        if word in SENTENCE_END:
            seen_end = True
        elif seen_end and not is_symbol_word(word):
            sentences += 1
            seen_end = False
    return sentences


def count_duplicates(items: Iterable[str]) -> tuple[int, int]:
    """(duplicate items, their total characters), walking in order: an item already seen is a duplicate.

    Gopher's repetition rules and FineWeb's char-duplicates rule both count lines/paragraphs this way.
    """
    seen: set[str] = set()
    duplicates = duplicate_chars = 0
    for item in items:
        if item in seen:
            duplicates += 1
            duplicate_chars += len(item)
        else:
            seen.add(item)
    return duplicates, duplicate_chars
