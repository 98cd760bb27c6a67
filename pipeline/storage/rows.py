"""Rows of a dataset a user brings: JSONL (optionally gzipped) or Parquet, one file or a directory of
them, local or s3://. `train-classifier` reads texts and `sft` conversations this way, so both accept
the same datasets and report the same mistakes.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterator
from typing import Any

from tokenmill.pipeline.errors import UserError
from tokenmill.pipeline.storage import S3Options, directory_prefix, exists, list_files, local_path, open_input
from tokenmill.pipeline.storage.parquet import iter_batches

JSON_LINES_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz")
SUFFIXES = (*JSON_LINES_SUFFIXES, ".parquet")
NOT_JSON = object()  # in place of a line that does not parse, for the caller to count


def dataset_files(uri: str, s3: S3Options, what: str = "dataset") -> list[str]:
    """`uri` if it is a file, else the visible files under it in name order (no "." or "_" names at any
    depth), each of which must be JSONL or Parquet by its name; `what` names the data in errors."""
    uri = local_path(uri) or uri
    if exists(uri, s3):
        files = [uri]
    else:
        prefix = directory_prefix(uri)
        files = [
            found
            for found in list_files(prefix, s3)
            if not any(part.startswith((".", "_")) for part in found[len(prefix) :].split("/"))
        ]
        if not files:
            raise UserError(f"no {what} at {uri}: give a JSONL or Parquet file, or a directory of them")
    unknown = [file for file in files if not file.endswith(SUFFIXES)]
    if unknown:
        suffixes = ", ".join(SUFFIXES)
        raise UserError(f"{unknown[0]} is neither JSONL nor Parquet: {what} files end in {suffixes}")
    return files


def column_values(file: str, column: str, s3: S3Options) -> Iterator[Any]:
    """Each row's `column` value, in order: None where a row lacks it (or is not a JSON object), NOT_JSON
    where a line does not parse. Blank lines are not rows."""
    if file.endswith(".parquet"):
        for batch in iter_batches(file, s3, [column]):
            yield from batch.column(0).to_pylist()
        return
    with open_input(file, s3) as stream:
        reader = gzip.GzipFile(fileobj=stream) if file.endswith(".gz") else io.BufferedReader(stream)
        for line in reader:
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:  # JSONDecodeError and UnicodeDecodeError alike
                yield NOT_JSON
                continue
            yield row.get(column) if isinstance(row, dict) else None
