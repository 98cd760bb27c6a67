"""Language identification with the real fastText lid.176 model (or any fastText LID model: lid.176.bin,
GlotLID). A document is kept when one of the wanted languages scores above the threshold; the text
is scored with newlines turned into spaces, as FineWeb does.

`precheck` runs before extraction: most Common Crawl pages are not in a wanted language, and
extraction (~40 ms a page) is most of the pipeline's cost. When every wanted language scores below
`skip_extraction_below` on the page's crude visible text, extraction is skipped and the page is
dropped as `language:precheck_other_language`. 0 turns the precheck off (datatrove's behaviour); the
bench measures what it changes. It reads the first `precheck_chars` characters of that text (an optional
key: 20,000 when the recipe does not name it); fewer cost less, which matters with the fast extractor.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from tokenmill.pipeline.ingest.document import Document
from tokenmill.pipeline.ingest.extract import visible_text
from tokenmill.pipeline.ingest.filters.rules import Rule, bind
from tokenmill.pipeline.quality.classifier import on_disk
from tokenmill.pipeline.recipe import RecipeError, optional_value

# lid.176.ftz as Facebook published it (https://fasttext.cc/docs/en/language-identification.html,
# CC BY-SA 3.0), shipped inside the package so no run downloads it.
_BUNDLED_MODEL = resources.files("tokenmill.pipeline.ingest.filters") / "models" / "lid.176.ftz"
_BUNDLED_SHA256 = "8f3472cfe8738a7b6099e8e999c3cbfae0dcd15696aac7d7738a8039db603e83"


@lru_cache(maxsize=1)
def bundled_model_path() -> str:
    """A file path to the bundled lid.176.ftz (a copy when the code runs from a zip), checked against
    its published hash once: a checkout that stored it as a Git LFS pointer or rewrote its bytes fails
    here with a clear message, not inside fastText."""
    path = on_disk(_BUNDLED_MODEL)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != _BUNDLED_SHA256:
        raise RuntimeError(f"{path} has sha256 {digest}, expected {_BUNDLED_SHA256}: reinstall tokenmill")
    return str(path)


@lru_cache(maxsize=4)
def load_model(path: str) -> Any:
    import fasttext

    return fasttext.load_model(path)


@dataclass(frozen=True)
class LanguageConfig:
    model: str
    languages: tuple[str, ...]
    threshold: float
    skip_extraction_below: float
    precheck_chars: int


class LanguageFilter:
    name = "language"
    signal_names: tuple[str, ...] = ()
    # A wanted language's score must be above the threshold; `language_score` holds the top score.
    rules = (Rule("below_threshold", "language_score", "<=", "threshold"),)
    # skip_extraction_below limits the precheck's scores, which no column keeps. The preset's keys only:
    # the optional `precheck_chars` (recipe.OPTIONAL) is read with its default.
    settings = ("model", "languages", "skip_extraction_below")

    def __init__(self, config: LanguageConfig):
        self.config = config
        (self.threshold,) = bind(self.rules, self.name, asdict(config))
        self.model = load_model(config.model or bundled_model_path())
        # Scores sum to at most 1, so above 0.5 only the top label can pass: one label is enough.
        self._k = 1 if config.threshold >= 0.5 else -1

    @classmethod
    def from_section(cls, section: dict[str, Any], all_signals: bool = False) -> LanguageFilter:
        try:
            config = LanguageConfig(
                section["model"],
                tuple(section["languages"]),
                section["threshold"],
                section["skip_extraction_below"],
                optional_value(section, "language.precheck_chars"),
            )
        except KeyError as missing:
            raise RecipeError(f"recipe table [language] needs {missing}") from None
        return cls(config)

    def scores(self, text: str) -> dict[str, float]:
        labels, probs = self.model.predict(text.replace("\n", " "), k=self._k)
        pairs = zip(labels, probs, strict=True)
        return {label.removeprefix("__label__"): float(prob) for label, prob in pairs}

    def precheck(self, doc: Document, html: str) -> bool:
        """False when the page is clearly in no wanted language, so extracting it would be wasted.
        The crude text's top language is recorded on the document either way."""
        if self.config.skip_extraction_below <= 0 or not self.config.languages:
            return True
        text = visible_text(html, self.config.precheck_chars)
        if not text:
            return True
        labels, probs = self.model.predict(text, k=-1, threshold=0.0)
        scores = {
            label.removeprefix("__label__"): float(prob) for label, prob in zip(labels, probs, strict=True)
        }
        doc.language, doc.language_score = max(scores.items(), key=lambda item: item[1])
        floor = self.config.skip_extraction_below
        return any(scores.get(lang, 0.0) >= floor for lang in self.config.languages)

    def __call__(self, doc: Document) -> str | None:
        scores = self.scores(doc.text)
        if not scores:
            return "no_prediction"
        doc.language, doc.language_score = max(scores.items(), key=lambda item: item[1])
        wanted = self.config.languages
        if not wanted or any(not self.threshold.drops(scores.get(lang, 0.0)) for lang in wanted):
            return None
        return self.threshold.reason if doc.language in wanted else "other_language"
