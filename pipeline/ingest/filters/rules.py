"""A filter's drop rules as data: the signal a rule reads, the recipe key that holds its limit, and which
side of the limit drops a document.

Each filter class declares its rules once (`rules`), checks documents with them, and the report draws
the same limits on the signal histograms; the limits' values live only in the recipe.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

Comparison = Literal["<", "<=", ">"]
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {"<": operator.lt, "<=": operator.le, ">": operator.gt}


@dataclass(frozen=True)
class Limit:
    """A rule bound to its recipe value: what a filter checks and what the report draws."""

    reason: str
    signal: str
    drop_when: Comparison
    value: float
    section: str
    key: str
    index: int | None = None  # the entry of a list of limits (one per n-gram size)

    @property
    def label(self) -> str:
        """Where the value comes from: "section.key", or "section.key[index]" for a list entry."""
        return f"{self.section}.{self.key}" + ("" if self.index is None else f"[{self.index}]")

    def drops(self, signal_value: float) -> bool:
        """True when a document with this signal value breaks the rule."""
        return _COMPARE[self.drop_when](signal_value, self.value)


@dataclass(frozen=True)
class Rule:
    """Drop a document, giving `reason`, when `signal <drop_when> recipe[key]`.

    `off` is the recipe value that switches the rule off (None: every value is a limit). With `per_size`
    the rule stands for one rule per n-gram size: `key` names a list of limits, `per_size` the list of
    the sizes they belong to, and `{n}` in `reason` and `signal` becomes each size.
    """

    reason: str
    signal: str
    drop_when: Comparison
    key: str
    off: float | None = None
    per_size: str | None = None

    def limits(self, section: str, table: Mapping[str, Any]) -> list[Limit]:
        """This rule's limits in recipe table `section`: none when it is switched off or the table lacks
        the key (a run record written by another version)."""
        if self.per_size is None:
            value = table.get(self.key)
            if value is None or value == self.off:
                return []
            return [Limit(self.reason, self.signal, self.drop_when, value, section, self.key)]
        sizes, values = table.get(self.per_size, []), table.get(self.key, [])
        return [
            Limit(
                self.reason.format(n=n),
                self.signal.format(n=n),
                self.drop_when,
                value,
                section,
                self.key,
                index,
            )
            for index, (n, value) in enumerate(zip(sizes, values, strict=False))
            if value != self.off
        ]


def bind(rules: Iterable[Rule], section: str, table: Mapping[str, Any]) -> list[Limit]:
    """Every limit of `rules` that recipe table `section` switches on, in the rules' order."""
    return [limit for rule in rules for limit in rule.limits(section, table)]
