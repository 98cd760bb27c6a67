"""The record every filter sees: extracted text plus provenance, signals and the shared word split."""

from __future__ import annotations

from dataclasses import dataclass, field

from tokenmill.pipeline.text import split_words


@dataclass
class Document:
    """One web page after extraction.

    `words` is computed once per text and shared by every filter (and later MinHash); a filter that
    rewrites the text (C4 drops lines) goes through `set_text`, which invalidates the split.
    """

    id: str
    text: str
    url: str
    date: str
    file_path: str
    dump: str = ""
    offset: int = 0
    length: int = 0
    content_type: str = ""
    charset: str = ""
    language: str = ""
    language_score: float = 0.0
    signals: dict[str, float] = field(default_factory=dict)
    _words: list[str] | None = field(default=None, repr=False)

    @property
    def words(self) -> list[str]:
        if self._words is None:
            self._words = split_words(self.text)
        return self._words

    def set_text(self, text: str) -> None:
        if text != self.text:
            self.text = text
            self._words = None
