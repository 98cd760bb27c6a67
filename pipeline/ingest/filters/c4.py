"""C4's line and page rules (Raffel et al. 2020), in FineWeb's variant (datatrove's C4QualityFilter).

C4 works line by line: it drops lines that look like boilerplate (too short, a giant token, mentions
of JavaScript, cookie and policy notices), strips Wikipedia citation marks, and rewrites the document
from the lines it keeps. "lorem ipsum" or a `{` in a kept line marks a template or code page, and drops
the whole document; so does having too few sentences left.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from tokenmill.pipeline.ingest.document import Document
from tokenmill.pipeline.ingest.filters.rules import Rule, bind
from tokenmill.pipeline.recipe import table_config
from tokenmill.pipeline.text import count_sentences

CITATION = re.compile(r"\[\d*]|\[edit]|\[citation needed]")
END_PUNCTUATION = (".", "?", "!", '"', "'")
POLICY_PHRASES = (
    "terms of use",
    "privacy policy",
    "cookie policy",
    "uses cookies",
    "use of cookies",
    "use cookies",
)


@dataclass(frozen=True)
class C4Config:
    filter_no_terminal_punct: bool
    remove_citations: bool
    min_num_sentences: int  # -1 disables
    min_words_per_line: int  # -1 disables
    max_word_length: int  # -1 disables
    filter_lorem_ipsum: bool
    filter_javascript: bool
    filter_curly_bracket: bool
    filter_policy: bool


class C4Filter:
    name = "c4"
    signal_names: tuple[str, ...] = (
        "c4_lines_total",
        "c4_lines_dropped_too_long_word",
        "c4_lines_dropped_no_terminal_punct",
        "c4_lines_dropped_too_few_words",
        "c4_lines_dropped_javascript",
        "c4_lines_dropped_policy",
        "c4_lines_lorem_ipsum",
        "c4_lines_curly_bracket",
        "c4_lines_kept",
        "c4_sentences",
    )
    rules = (Rule("too_few_sentences", "c4_sentences", "<", "min_num_sentences", off=-1),)
    # Switches and per-line limits: no document signal holds what they compare.
    settings = (
        "filter_no_terminal_punct",
        "remove_citations",
        "min_words_per_line",
        "max_word_length",
        "filter_lorem_ipsum",
        "filter_javascript",
        "filter_curly_bracket",
        "filter_policy",
    )

    def __init__(self, config: C4Config):
        self.config = config
        self.limits = bind(self.rules, self.name, asdict(config))

    @classmethod
    def from_section(cls, section: dict[str, Any], all_signals: bool = False) -> C4Filter:
        return cls(table_config(C4Config, section, "c4"))

    def __call__(self, doc: Document) -> str | None:
        """Filter the lines; keep the document (rewritten) or return why it goes.

        The reference returns at the first "lorem ipsum" or `{` line. Here the walk goes on to the end so
        that every count is complete, treating such a line as if its rule were off (so c4_sentences is
        what the document would have with those rules disabled); the reason returned is the same.
        """
        config = self.config
        counts = dict.fromkeys(self.signal_names, 0)
        kept_lines: list[str] = []
        doc_reason: str | None = None
        for line in doc.text.splitlines():
            counts["c4_lines_total"] += 1
            line = line.strip()
            words = line.split()  # whitespace words, before citations are removed, as in the reference
            if config.max_word_length != -1 and any(len(word) > config.max_word_length for word in words):
                counts["c4_lines_dropped_too_long_word"] += 1
                continue
            if config.remove_citations:
                line = CITATION.sub("", line)
            if config.filter_no_terminal_punct and (
                not line.endswith(END_PUNCTUATION) or line.endswith("...")
            ):
                counts["c4_lines_dropped_no_terminal_punct"] += 1
                continue
            if len(words) < config.min_words_per_line:
                counts["c4_lines_dropped_too_few_words"] += 1
                continue
            lower = line.lower()
            if config.filter_lorem_ipsum and "lorem ipsum" in lower:
                counts["c4_lines_lorem_ipsum"] += 1
                doc_reason = doc_reason or "lorem_ipsum"
            if config.filter_javascript and "javascript" in lower:
                counts["c4_lines_dropped_javascript"] += 1
                continue
            if config.filter_curly_bracket and "{" in line:
                counts["c4_lines_curly_bracket"] += 1
                doc_reason = doc_reason or "curly_bracket"
            if config.filter_policy and any(phrase in lower for phrase in POLICY_PHRASES):
                counts["c4_lines_dropped_policy"] += 1
                continue
            if config.min_num_sentences != -1:
                counts["c4_sentences"] += count_sentences(line)
            counts["c4_lines_kept"] += 1
            kept_lines.append(line)
        doc.signals.update(counts)
        if doc_reason is not None:
            return doc_reason
        for limit in self.limits:
            if limit.drops(counts[limit.signal]):
                return limit.reason
        doc.set_text("\n".join(kept_lines).strip())
        return None
