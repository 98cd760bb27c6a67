"""Record iteration over WARC, WET and ARC files that never stops a job on bad data.

warcio parses the records. Around it this module adds what crawl-scale input needs:

* Any gzip layout. Common Crawl writes one gzip member per record. WET excerpts and files gzipped after
  the fact are a single member, which warcio refuses. Plain files are not compressed at all. Every gzip
  stream goes through one streaming decompressor (`_GunzipReader`). It hands warcio plain bytes and
  remembers where each member starts. A record that fills whole members therefore still gets Common
  Crawl's compressed offset and length: the pair the CC index uses for random access.
* Errors as values, for bad data only. Corrupt bytes, bytes that are no archive, or a file that really
  ends inside a gzip member or a record end the iteration with one `RecordError`. A record whose body
  alone fails gives a `RecordError`, and the iteration goes on. A failing source (network, disk)
  raises instead, as `SourceError`: a retry can fix that, but it cannot fix bad bytes. The line between
  the two is the source's end of data: the storage layer's readers raise (`IncompleteReadError`) when a
  connection ends before the length its server promised, so an empty read here is the file's own end,
  never a cut connection.
* Bounded memory. Everything streams, and a body is read up to `max_payload_bytes` and no further.
"""

from __future__ import annotations

import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from warcio.archiveiterator import ArchiveIterator
from warcio.recordloader import ArcWarcRecord, ArcWarcRecordLoader
from warcio.statusandheaders import StatusAndHeaders
from warcio.timeutils import timestamp_to_iso_date

_CHUNK = 64 * 1024
_GZIP_MAGIC = b"\x1f\x8b"
_MAX_STATUS_LINE = 8192


@dataclass
class RawRecord:
    """One archive record with the fields the pipeline needs.

    `offset` and `length` are compressed positions when the record fills whole gzip members (Common
    Crawl's per-record layout). Otherwise they are positions in the uncompressed stream, as warcio
    reports them for plain files. `rec_type` is warcio's: "arc_header" for an ARC file's header record.
    `truncated` is set by a WARC-Truncated header (the crawler cut the payload) or by max_payload_bytes.
    """

    rec_type: str
    record_id: str
    url: str | None
    date: str | None
    payload_type: str | None
    http_status: int | None
    http_content_type: str | None
    body: bytes
    offset: int
    length: int
    truncated: bool


@dataclass
class RecordError:
    """A record or stream that could not be read. `kind` is a short snake_case name for stats."""

    kind: str
    message: str
    offset: int


class SourceError(OSError):
    """The underlying stream failed (network, disk, a read cut short). Not a data error: a retry may fix
    it, so the caller must not count what was read as the whole file."""


def _read_source(stream: BinaryIO, size: int) -> bytes:
    """Every read of the input goes through here: any exception is the source's failure, and b"" is
    the end of the file as stored (the storage layer never ends a read short without raising)."""
    try:
        return stream.read(size)
    except Exception as exc:
        raise SourceError(f"reading the input failed: {type(exc).__name__}: {exc}") from exc


class _PlainReader:
    """An uncompressed input, with the sniffed first block put back in front. `tell()` is for warcio."""

    error: tuple[str, str] | None = None  # plain bytes cannot be corrupt at this level

    def __init__(self, source: BinaryIO, head: bytes):
        self._source, self._head, self._pos = source, head, 0

    def read(self, size: int) -> bytes:
        if self._head:
            data, self._head = self._head[:size], self._head[size:]
        else:
            data = _read_source(self._source, size)
        self._pos += len(data)
        return data

    def tell(self) -> int:
        return self._pos

    def span(self, start: int, end: int) -> tuple[int, int] | None:
        """Plain files have no compressed positions; warcio's own offset and length apply."""
        return None

    def locate(self, pos: int) -> int:
        return pos


class _GunzipReader:
    """Decompresses a stream of gzip members of any layout, and maps member boundaries to compressed offsets.

    Corrupt or cut-off gzip data ends the stream as if it were a clean end, and `error` says why. Every
    record before the break then still comes out whole. Only the record that the break cuts into is
    lost, because warcio finds it shorter than its Content-Length.

    `boundaries` maps the uncompressed position of each member start and end to its compressed
    position. Entries before the current record are dropped, so the map stays small.
    """

    def __init__(self, source: BinaryIO, head: bytes):
        self._source = source
        self._pending = head  # compressed bytes not yet given to zlib
        self._read_total = len(head)
        self._member: zlib._Decompress | None = None
        self._pos = 0
        self.boundaries: dict[int, int] = {}
        self.error: tuple[str, str] | None = None

    def _compressed_pos(self) -> int:
        return self._read_total - len(self._pending)

    def _fill(self) -> bool:
        self._pending = _read_source(self._source, _CHUNK)
        self._read_total += len(self._pending)
        return bool(self._pending)

    def read(self, size: int) -> bytes:
        while self.error is None:
            if self._member is None:
                if not self._pending and not self._fill():
                    return b""  # clean end: the last member was complete
                self._member = zlib.decompressobj(wbits=31)
                self.boundaries.setdefault(self._pos, self._compressed_pos())
            if not self._pending and not self._fill():  # the stored file ends here: bad data, not a cut
                self.error = ("truncated", f"the gzip data ends inside a member, at byte {self._read_total}")
                break
            try:
                out = self._member.decompress(self._pending, size)
            except zlib.error as exc:
                self.error = ("corrupt_gzip", f"{exc}, near compressed byte {self._compressed_pos()}")
                break
            self._pos += len(out)
            if self._member.eof:
                self._pending, self._member = self._member.unused_data, None
                self.boundaries.setdefault(self._pos, self._compressed_pos())
            else:
                self._pending = self._member.unconsumed_tail
            if out:
                return out
        return b""

    def tell(self) -> int:
        return self._pos

    def span(self, start: int, end: int) -> tuple[int, int] | None:
        """The compressed (offset, length) of [start, end) if it is made of whole members."""
        begin, finish = self.boundaries.get(start), self.boundaries.get(end)
        self.boundaries = {pos: cpos for pos, cpos in self.boundaries.items() if pos >= end}
        if begin is None or finish is None:
            return None
        return begin, finish - begin

    def locate(self, pos: int) -> int:
        """The compressed offset of a position that starts a member, else the position itself."""
        return self.boundaries.get(pos, pos)


class _Loader(ArcWarcRecordLoader):
    """warcio takes whatever starts a response block as its HTTP status line. This loader only accepts a
    real "HTTP/" line. Otherwise the bytes it read stay in `unparsed` and belong to the payload, as in
    records without HTTP headers such as DKPro C4Corpus output."""

    unparsed = b""

    def load_http_headers(
        self, rec_type: str | None, uri: str | None, stream: Any, length: int | None
    ) -> StatusAndHeaders | None:
        self.unparsed = b""
        if not length or not (uri or "").startswith(self.HTTP_SCHEMES):
            return None
        if rec_type != "response":
            return super().load_http_headers(rec_type, uri, stream, length)
        line = stream.readline(_MAX_STATUS_LINE)
        if line[:5].upper() != b"HTTP/":
            self.unparsed = line
            return None
        return self.http_parser.parse(stream, line)


class _Archive(ArchiveIterator):
    def __init__(self, reader: _PlainReader | _GunzipReader):
        super().__init__(reader, arc2warc=False)
        self.loader = _Loader(verify_http=False, arc2warc=False)

    def _consume_blanklines(self) -> tuple[bytes | None, int]:
        """Skip only the blank lines between records. warcio also drops the first line after a record
        even when that line is not blank. That loses every second record of ARC files written without
        the separating newline, such as Common Crawl's 2008 ARCs."""
        skipped = 0
        while True:
            line = self.reader.readline()
            if not line or line.strip():
                return line or None, skipped
            skipped += len(line)


def _derived_id(url: str | None, date: str | None, offset: int) -> str:
    """ARC records have no WARC-Record-ID. This one is stable across runs for the same file."""
    return f"<urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'{url} {date} {offset}')}>"


def _http_fields(record: ArcWarcRecord) -> tuple[int | None, str | None]:
    headers = record.http_headers
    if headers is None or not headers.protocol.upper().startswith("HTTP/"):
        return None, None  # no HTTP headers, or a request line
    try:
        status = int(headers.get_statuscode())
    except ValueError:
        status = None
    return status, headers.get_header("Content-Type")


def _read_payload(record: ArcWarcRecord, prefix: bytes, limit: int) -> tuple[bytes, bool]:
    """The decoded payload, cut to `limit` bytes. Also says whether it was cut."""
    body = prefix + record.content_stream().read(max(0, limit + 1 - len(prefix)))
    return body[:limit], len(body) > limit


def _valid_length(record: ArcWarcRecord) -> bool:
    """warcio reads a missing or non-numeric length as 0 and goes on. Lines of plain text then pass for
    ARC headers, because any line of five words has the ARC header's five fields."""
    declared = record.rec_headers.get_header("length" if record.format == "arc" else "Content-Length")
    return declared is not None and declared.strip().isdigit()


def _cut_off(record: ArcWarcRecord) -> bool:
    """True when the stream ended before the record's declared length."""
    return getattr(record.raw_stream, "limit", 0) > 0


def _to_raw(record: ArcWarcRecord, body: bytes, cut: bool, offset: int, length: int) -> RawRecord:
    headers = record.rec_headers
    if record.format == "arc":
        url = headers.get_header("uri")
        stamp = headers.get_header("archive-date") or ""
        date = timestamp_to_iso_date(stamp) if len(stamp) == 14 and stamp.isdigit() else stamp or None
    else:
        url, date = headers.get_header("WARC-Target-URI"), headers.get_header("WARC-Date")
    status, content_type = _http_fields(record)
    return RawRecord(
        rec_type=record.rec_type or "",
        record_id=headers.get_header("WARC-Record-ID") or _derived_id(url, date, offset),
        url=url,
        date=date,
        payload_type=headers.get_header("WARC-Identified-Payload-Type"),
        http_status=status,
        http_content_type=content_type,
        body=body,
        offset=offset,
        length=length,
        truncated=cut or headers.get_header("WARC-Truncated") is not None,
    )


def iter_records(stream: BinaryIO, max_payload_bytes: int = 10_000_000) -> Iterator[RawRecord | RecordError]:
    """Yield every readable record of a WARC/WET/ARC stream, and a `RecordError` where reading fails.

    Handles per-record gzip, single-member gzip and plain files alike. Bodies longer than
    `max_payload_bytes` are cut to it and flagged `truncated`. A stream that cannot go on ends with one
    error. An input with no records at all yields an "empty_file" error, because a real archive always
    has at least one record. Raises only `SourceError`.
    """
    head = _read_source(stream, _CHUNK)
    reader = _GunzipReader(stream, head) if head.startswith(_GZIP_MAGIC) else _PlainReader(stream, head)
    archive = _Archive(reader)

    def failure(kind: str, message: str, start: int) -> RecordError:
        """A broken gzip stream is the cause of whatever warcio then trips over."""
        kind, message = reader.error or (kind, message)
        return RecordError(kind, message, reader.locate(start))

    seen = 0
    while True:
        try:
            record = next(archive)
        except StopIteration:
            if reader.error or not seen:
                yield failure("empty_file", "the input holds no records", archive.offset)
            return
        except SourceError:
            raise
        except Exception as exc:  # ArchiveLoadFailed, or anything warcio trips over in bad bytes
            kind = "bad_header" if seen else "unreadable_format"
            yield failure(kind, " ".join(f"{type(exc).__name__}: {exc}".split())[:300], archive.offset)
            return
        start = archive.offset  # uncompressed position of this record; set by warcio inside next()
        if not _valid_length(record):
            kind = "bad_header" if seen else "unreadable_format"
            yield failure(kind, "a record without a valid length header", start)
            return
        seen += 1
        try:
            body, cut = _read_payload(record, archive.loader.unparsed, max_payload_bytes)
            archive.read_to_end()  # the rest of the record and the blank lines after it
        except SourceError:
            raise
        except Exception as exc:  # one payload that fails to decode must not end the file
            yield failure("unreadable_body", f"{type(exc).__name__}: {exc}", start)
            if reader.error:
                return
            continue
        if _cut_off(record):
            yield failure("truncated", "the input ends inside this record", start)
            return
        offset, length = reader.span(start, archive.offset) or (start, archive.get_record_length())
        yield _to_raw(record, body, cut, offset, length)
