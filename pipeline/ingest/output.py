"""Writing one unit's documents as Parquet: FineWeb's columns first, then provenance, then signals, then
the recipe's classifier scores.

Rows stream into a local temporary file in row groups and are committed in one step at the end
(a rename locally, a finished upload on S3), so a killed task never leaves a visible partial file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

from tokenmill.pipeline.ingest.document import Document
from tokenmill.pipeline.ingest.filters import signal_columns
from tokenmill.pipeline.storage import S3Options, upload_file_atomic

if TYPE_CHECKING:
    from tokenmill.pipeline.ingest.scores import DocumentScores

FINEWEB_COLUMNS = [
    ("text", pa.string()),
    ("id", pa.string()),
    ("dump", pa.string()),
    ("url", pa.string()),
    ("date", pa.string()),
    ("file_path", pa.string()),
    ("language", pa.string()),
    ("language_score", pa.float64()),
]
PROVENANCE_COLUMNS = [
    ("warc_offset", pa.int64()),
    ("warc_length", pa.int64()),
    ("content_type", pa.string()),
    ("charset", pa.string()),
]
DROP_COLUMNS = [("drop_stage", pa.string()), ("drop_reason", pa.string())]


def document_schema(with_drop_reason: bool = False, score_columns: Sequence[str] = ()) -> pa.Schema:
    signals = [(name, pa.float64()) for name in signal_columns()]
    scores = [(name, pa.float64()) for name in score_columns]
    extra = DROP_COLUMNS if with_drop_reason else []
    return pa.schema(FINEWEB_COLUMNS + PROVENANCE_COLUMNS + signals + scores + extra)


def _row(doc: Document, drop: tuple[str, str] | None) -> dict[str, object]:
    row: dict[str, object] = {
        "text": doc.text,
        "id": doc.id,
        "dump": doc.dump,
        "url": doc.url,
        "date": doc.date,
        "file_path": doc.file_path,
        "language": doc.language,
        "language_score": doc.language_score,
        "warc_offset": doc.offset,
        "warc_length": doc.length,
        "content_type": doc.content_type,
        "charset": doc.charset,
    }
    row.update(doc.signals)
    if drop is not None:
        row["drop_stage"], row["drop_reason"] = drop
    return row


class DocumentWriter:
    """Buffers rows, writes row groups to a local temp file, commits to `uri` on `commit()`. With
    `scores`, the kept documents of each row group are scored in one batch; dropped ones stay null."""

    def __init__(
        self,
        uri: str,
        s3: S3Options,
        with_drop_reason: bool = False,
        scores: DocumentScores | None = None,
        row_group_size: int = 2000,
    ):
        self.uri, self.s3 = uri, s3
        self.scores = scores
        self.schema = document_schema(with_drop_reason, scores.columns if scores is not None else ())
        self.row_group_size = row_group_size
        self.rows: list[dict[str, object]] = []
        self.count = 0
        handle, self._tmp_path = tempfile.mkstemp(prefix="tokenmill-", suffix=".parquet")
        os.close(handle)
        self._writer = pq.ParquetWriter(self._tmp_path, self.schema, compression="zstd")

    def add(self, doc: Document, drop: tuple[str, str] | None = None) -> None:
        self.rows.append(_row(doc, drop))
        self.count += 1
        if len(self.rows) >= self.row_group_size:
            self._flush()

    def _flush(self) -> None:
        if self.rows:
            if self.scores is not None:
                self.scores.add_to([row for row in self.rows if "drop_stage" not in row])
            self._writer.write_table(pa.Table.from_pylist(self.rows, schema=self.schema))
            self.rows = []

    def commit(self) -> None:
        self._flush()
        self._writer.close()
        try:
            upload_file_atomic(self._tmp_path, self.uri, self.s3)
        finally:
            Path(self._tmp_path).unlink(missing_ok=True)

    def abort(self) -> None:
        self._writer.close()
        Path(self._tmp_path).unlink(missing_ok=True)
