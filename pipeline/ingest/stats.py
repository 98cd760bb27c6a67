"""Per-unit accounting: every record that enters is kept, dropped with a reason, or an error."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class UnitStats:
    unit: str
    path: str
    records: int = 0
    html_responses: int = 0
    kept: int = 0
    dropped: Counter[str] = field(default_factory=Counter)  # "stage:reason" -> count
    errors: Counter[str] = field(default_factory=Counter)  # "stage:kind" -> count
    bytes_read: int = 0
    seconds: float = 0.0

    def drop(self, stage: str, reason: str) -> None:
        self.dropped[f"{stage}:{reason}"] += 1

    def error(self, stage: str, kind: str) -> None:
        self.errors[f"{stage}:{kind}"] += 1

    @property
    def balanced(self) -> bool:
        """records in = kept + Σ dropped + errors, exactly."""
        return self.records == self.kept + sum(self.dropped.values()) + sum(self.errors.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "unit": self.unit,
            "path": self.path,
            "records": self.records,
            "html_responses": self.html_responses,
            "kept": self.kept,
            "dropped": dict(sorted(self.dropped.items())),
            "errors": dict(sorted(self.errors.items())),
            "bytes_read": self.bytes_read,
            "seconds": round(self.seconds, 3),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UnitStats:
        return cls(
            unit=data["unit"],
            path=data["path"],
            records=data["records"],
            html_responses=data["html_responses"],
            kept=data["kept"],
            dropped=Counter(data["dropped"]),
            errors=Counter(data["errors"]),
            bytes_read=data["bytes_read"],
            seconds=data["seconds"],
        )
