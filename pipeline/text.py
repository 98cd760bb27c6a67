"""Word and sentence splitting shared by every filter.

FineWeb's reference (datatrove) splits English with spaCy's tokenizer, which costs ~10x the rest of a
filter chain. This regex reproduces the splits that matter to the Gopher/C4/FineWeb rules: punctuation
stands alone, contractions split as `do|n't`, `it|'s`, abbreviations (`U.S.`), numbers (`1,000.5`) and
URLs stay whole, hyphenated words split around the hyphen. The bench measures the agreement.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from functools import lru_cache

_WORD_RE = re.compile(
    r"""
    https?://\S+                  # URLs stay whole
    | \w+(?=n't\b) | n't\b        # do|n't, ca|n't
    | '(?:s|re|ve|ll|d|m)\b       # clitics split from their word
    | (?:[^\W\d_]\.){2,}          # U.S., e.g.
    | \d+(?:[.,:/]\d+)*           # 1,000.50  12:30  3/4
    | \w+                         # words
    | \.\.\.                      # an ellipsis is one token
    | \S                          # any other character on its own
    """,
    re.VERBOSE,
)

_ASCII_SYMBOLS = frozenset("$+<=>^`|~")

# Characters that end a sentence for spaCy's rule-based sentencizer (its default punct_chars, abridged
# to the scripts lid.176 keeps in practice; the filters only ever see `language == en` text).
SENTENCE_END = frozenset(".!?։؟۔܀܁܂।॥၊။።፧፨᙮᠃᠉᥄᥅᪨᪩᪪᪫᭚᭛᭞᭟᰻᰼᱾᱿‼‽⁇⁈⁉⸮⸼꓿꘎꘏꛳꛷꡶꡷꣎꣏꤯꧈꧉꩝꩞꩟꫰꫱꯫﹒﹖﹗！．？｡。")


def split_words(text: str) -> list[str]:
    """Split text into word tokens (see the module docstring for the rules)."""
    return _WORD_RE.findall(text)


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
    """Every Unicode Sentence_Terminal character, as a tuple for `str.endswith`."""
    import regex

    sterm = regex.compile(r"\p{Sentence_Terminal}")
    return tuple(chr(code) for code in range(0x110000) if sterm.match(chr(code)))


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
