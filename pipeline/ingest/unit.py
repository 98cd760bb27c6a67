"""One unit of work (one WARC/WET file) through the FineWeb stages, with every record accounted for.

records -> type check -> URL filter -> charset decoding -> extraction -> language -> Gopher repetition
-> Gopher quality -> C4 -> FineWeb quality -> kept (and scored by the recipe's classifiers, if any).
Each record ends as kept, dropped with "stage:reason", or an error; `UnitStats.balanced` holds for
every unit.

Commit protocol per unit (`tokenmill.pipeline.completion`): the unit's marker is removed, documents (and
removed documents) Parquet committed atomically, then the stats record, then the marker last with the
fingerprint of the input and the settings. A rerun skips units whose marker is current.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from tokenmill.pipeline.completion import Completion, fingerprint
from tokenmill.pipeline.ingest.charset import decode_html
from tokenmill.pipeline.ingest.document import Document
from tokenmill.pipeline.ingest.extract import Extractor, ExtractSettings
from tokenmill.pipeline.ingest.filters import Filter, build_text_filters
from tokenmill.pipeline.ingest.filters.language import LanguageFilter
from tokenmill.pipeline.ingest.filters.url import URLFilter
from tokenmill.pipeline.ingest.output import DocumentWriter
from tokenmill.pipeline.ingest.scores import DocumentScores
from tokenmill.pipeline.ingest.sources import unit_name
from tokenmill.pipeline.ingest.stats import UnitStats
from tokenmill.pipeline.ingest.warc import RawRecord, RecordError, iter_records
from tokenmill.pipeline.recipe import Recipe, load_recipe
from tokenmill.pipeline.storage import S3Options, delete, join, open_input, write_atomic
from tokenmill.pipeline.storage.uri import object_path, redact

log = logging.getLogger(__name__)

Drop = tuple[str, str]  # (stage, reason)


@dataclass(frozen=True)
class IngestJob:
    """What every task needs to process a unit; small and picklable (it travels to executors)."""

    root: str
    recipe: Recipe = field(default_factory=load_recipe)
    dump: str = ""
    keep_removed: bool = False
    limit: int | None = None  # records read per unit, for trial runs
    s3: S3Options = field(default_factory=S3Options)


class DocumentPipeline:
    """The per-record stages of a recipe, built once per process (model load, extractor child)."""

    def __init__(self, recipe: Recipe, all_signals: bool = False):
        reader = recipe.section("reader")
        self.html_types = frozenset(reader["html_types"])
        self.require_http_200 = bool(reader["require_http_200"])
        self.max_payload_bytes = int(reader["max_payload_bytes"])
        url_section = recipe.section("url")
        self.url_filter = URLFilter.from_section(url_section) if url_section.pop("enabled", True) else None
        self.extractor = Extractor(ExtractSettings.from_section(recipe.section("extract")))
        self.text_filters: list[Filter] = build_text_filters(recipe, all_signals=all_signals)
        self.language_filter = next((f for f in self.text_filters if isinstance(f, LanguageFilter)), None)
        self.scores = DocumentScores(recipe.classifiers) if recipe.classifiers else None

    def _payload_type(self, record: RawRecord) -> str:
        declared = record.payload_type or record.http_content_type or ""
        return declared.split(";", 1)[0].strip().lower()

    def process(
        self, record: RawRecord, stats: UnitStats, file_path: str, dump: str
    ) -> tuple[Document, Drop | None] | Drop:
        """Route one record; returns (document, None) when kept, (document, drop) when dropped after a
        document existed, or a bare drop for records that never became documents."""
        if record.rec_type not in ("response", "conversion"):
            return "read", f"{record.rec_type}_record"
        content_type = self._payload_type(record)
        if record.rec_type == "response" and content_type not in self.html_types:
            return "read", "not_html"
        stats.html_responses += 1
        if self.require_http_200 and record.rec_type == "response" and record.http_status != 200:
            return "read", "http_status"
        if not record.url:
            return "read", "no_url"
        doc = Document(
            id=record.record_id,
            text="",
            url=record.url,
            date=record.date or "",
            file_path=file_path,
            dump=dump,
            offset=record.offset,
            length=record.length,
            content_type=content_type,
        )
        if self.url_filter is not None and (reason := self.url_filter(doc)):
            return doc, ("url", reason)
        if record.rec_type == "conversion":  # WET: text already extracted, UTF-8 by specification
            doc.charset, text = "utf-8", record.body.decode("utf-8", errors="replace").strip()
        else:
            decoded = decode_html(record.body, record.http_content_type)
            if decoded is None:
                return doc, ("decode", "undecodable")
            html, doc.charset = decoded
            if self.language_filter is not None and not self.language_filter.precheck(doc, html):
                return doc, ("language", "precheck_other_language")
            text, status = self.extractor(html)
            if status != "ok":
                return doc, ("extract", status)
        if not text:
            return doc, ("extract", "no_text")
        doc.set_text(text)
        for text_filter in self.text_filters:
            if reason := text_filter(doc):
                return doc, (text_filter.name, reason)
        return doc, None


_PIPELINES: dict[tuple[str, bool], DocumentPipeline] = {}


def _pipeline_for(recipe: Recipe, all_signals: bool) -> DocumentPipeline:
    """One pipeline per recipe per process: Spark reuses Python workers across tasks. Dropped documents
    get every signal only when they are written (`--keep-removed`)."""
    key = (recipe.sha256, all_signals)
    if key not in _PIPELINES:
        _PIPELINES[key] = DocumentPipeline(recipe, all_signals)
    return _PIPELINES[key]


_DUMP_IN_PATH = re.compile(r"CC-MAIN-\d{4}-\d{2}")


def dump_name(uri: str, given: str) -> str:
    """The dump a file belongs to: as given, else the CC-MAIN-YYYY-WW in its Common Crawl path."""
    if given:
        return given
    found = _DUMP_IN_PATH.search(uri)
    return found.group(0) if found else ""


def unit_paths(root: str, unit: str) -> dict[str, str]:
    return {
        "documents": join(root, "documents", f"{unit}.parquet"),
        "removed": join(root, "removed", f"{unit}.parquet"),
        "stats": join(root, "stats", "units", f"{unit}.json"),
        "marker": join(root, "markers", f"{unit}.done"),
    }


def unit_fingerprint(uri: str, job: IngestJob, version: str | None = None) -> str:
    """What a unit's outputs depend on: the input file (its URI and, where known, the version of its
    content: size and mtime or ETag, see `sources.input_versions`), the recipe and the run's settings."""
    return fingerprint(
        input=uri,
        version=version,
        recipe=job.recipe.sha256,
        dump=dump_name(uri, job.dump),
        limit=job.limit,
        keep_removed=job.keep_removed,
    )


def _completion(uri: str, job: IngestJob) -> Completion:
    return Completion(unit_paths(job.root, unit_name(uri))["marker"], job.s3)


def completed_stats(uri: str, job: IngestJob, version: str | None = None) -> UnitStats | None:
    """The stats of a unit a previous run completed from this content with these settings, else None."""
    record = _completion(uri, job).current(unit_fingerprint(uri, job, version))
    return None if record is None else UnitStats.from_dict(record["stats"])


class _CountingReader:
    """Counts the bytes warcio pulls from the (possibly compressed) input stream."""

    def __init__(self, stream: BinaryIO):
        self.stream, self.count = stream, 0

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.count += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def readable(self) -> bool:
        return True


def _records(
    stream: BinaryIO, limit: int | None, max_payload_bytes: int
) -> Iterator[RawRecord | RecordError]:
    for index, item in enumerate(iter_records(stream, max_payload_bytes)):
        if limit is not None and index >= limit:
            return
        yield item


def process_unit(uri: str, job: IngestJob, version: str | None = None) -> UnitStats:
    """Process one input file end to end and commit its outputs; skip it if already complete.

    Bad data (a file truncated or corrupt as stored) is counted as `read:*` errors and the unit
    completes. A failing source (`SourceError`: the connection cut beyond the storage layer's retries,
    the file changed while read) raises: nothing is committed, no marker is written, and the next run
    retries the unit.
    """
    if (previous := completed_stats(uri, job, version)) is not None:
        return previous
    unit = unit_name(uri)
    paths = unit_paths(job.root, unit)
    completion = _completion(uri, job)
    completion.begin()
    if not job.keep_removed:
        delete(paths["removed"], job.s3)  # an earlier --keep-removed run's; it would not match the rest
    stats = UnitStats(unit=unit, path=redact(uri))
    dump = dump_name(uri, job.dump)
    file_path = object_path(uri)  # what documents record: no userinfo, no presigned query
    started = time.perf_counter()
    pipeline = _pipeline_for(job.recipe, job.keep_removed)
    kept = DocumentWriter(paths["documents"], job.s3, scores=pipeline.scores)
    removed = (
        DocumentWriter(paths["removed"], job.s3, with_drop_reason=True, scores=pipeline.scores)
        if job.keep_removed
        else None
    )
    try:
        with open_input(uri, job.s3) as raw:
            stream = _CountingReader(raw)
            for item in _records(stream, job.limit, pipeline.max_payload_bytes):
                stats.records += 1
                if isinstance(item, RecordError):
                    stats.error("read", item.kind)
                    log.warning("%s: %s at offset %s: %s", redact(uri), item.kind, item.offset, item.message)
                    continue
                try:
                    outcome = pipeline.process(item, stats, file_path, dump)
                except Exception as exc:  # a record that breaks a stage is counted, never fatal
                    stats.error("process", type(exc).__name__)
                    log.exception("%s: record %s failed", redact(uri), item.record_id)
                    continue
                if isinstance(outcome[0], str):
                    stats.drop(*outcome)
                    continue
                doc, drop = outcome
                if drop is None:
                    stats.kept += 1
                    kept.add(doc)
                else:
                    stats.drop(*drop)
                    if removed is not None:
                        removed.add(doc, drop)
        stats.bytes_read = stream.count
        kept.commit()
        if removed is not None:
            removed.commit()
    except BaseException:
        kept.abort()
        if removed is not None:
            removed.abort()
        raise
    stats.seconds = time.perf_counter() - started
    write_atomic(paths["stats"], json.dumps(stats.to_dict(), indent=1).encode(), job.s3)
    completion.commit(unit_fingerprint(uri, job, version), {"stats": stats.to_dict()})
    return stats
