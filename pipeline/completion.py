"""One completion protocol for every stage and every ingest unit: a marker, written last, that holds the
fingerprint of the inputs' content and the settings that produced the outputs beside it.

    completion = Completion(join(root, "dedup", "_COMPLETE.json"), s3)
    if completion.current(print_) is not None: ...        # complete and current: nothing to do
    completion.begin()                                     # outputs are about to change: not complete
    ... write the outputs ...
    completion.commit(print_, {"stats": ...})              # complete, for exactly these inputs/settings

A marker therefore means "complete and current": a crash between `begin` and `commit` leaves no marker,
and a change of any input's content or any setting changes the fingerprint, so the stage reruns.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from tokenmill.pipeline.storage import S3Options, delete, exists, read_bytes, write_atomic


def fingerprint(**parts: Any) -> str:
    """sha256 of the parts as canonical JSON: content fingerprints of inputs, settings, versions."""
    material = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(material.encode()).hexdigest()


@dataclass(frozen=True)
class Completion:
    """The marker of one stage's (or one unit's) outputs; small and picklable, it travels to executors."""

    marker: str
    s3: S3Options

    def read(self) -> dict[str, Any] | None:
        return json.loads(read_bytes(self.marker, self.s3)) if exists(self.marker, self.s3) else None

    def current(self, print_: str) -> dict[str, Any] | None:
        """The marker's record when the outputs are complete for this fingerprint, else None."""
        record = self.read()
        return record if record is not None and record.get("fingerprint") == print_ else None

    def begin(self) -> None:
        """Remove the marker before any output is rewritten: from here the outputs are not complete."""
        delete(self.marker, self.s3)

    def commit(self, print_: str, record: dict[str, Any]) -> None:
        """Write the marker last: the outputs are complete and current for `print_`."""
        write_atomic(self.marker, json.dumps({**record, "fingerprint": print_}, indent=1).encode(), self.s3)
