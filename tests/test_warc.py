"""Record iteration over every real archive in tests/data/warc, and over synthesized damage to them."""

from __future__ import annotations

import gzip
import io
from collections import Counter
from pathlib import Path

import pytest
from warcio.archiveiterator import ArchiveIterator
from warcio.recordloader import ArcWarcRecord

from tests.conftest import WARC_DIR
from tokenmill.pipeline.ingest.warc import RawRecord, RecordError, SourceError, iter_records

COPYCAT_ARC = WARC_DIR / "copycat-cc2008-small-sample-1213893279526_0.arc.gz"
CC2008_WARC = WARC_DIR / "derived" / "cc2008-arc-sample-1213893279526_0.converted.warc.gz"
RESILIPARSE = WARC_DIR / "resiliparse-warcfile.warc.gz"
JOSIMTEXT = WARC_DIR / "josimtext-cc-test.warc.gz"
WET_SINGLE_MEMBER = WARC_DIR / "jeffharwell-filter_test_1.wet.gz"

# Record counts by type. Checked against warcio 1.8.1 (after gunzip for the single-member files).
EXPECTED = {
    "resiliparse-warcfile.warc.gz": {"warcinfo": 1, "request": 17, "response": 16, "metadata": 16},
    "whirlwind.warc.gz": {"warcinfo": 1, "request": 1, "response": 1, "metadata": 1},
    "whirlwind.warc.wet.gz": {"warcinfo": 1, "conversion": 1},
    "jeffharwell-filter_test_1.wet.gz": {"warcinfo": 1, "conversion": 25},
    "crate-example.wet.gz": {"warcinfo": 1, "conversion": 2},
    "jwarc-cc.warc.gz": {"response": 1},
    "aut-example.warc.gz": {"warcinfo": 1, "response": 299, "request": 261, "metadata": 261},
    "dolma-sample-0000.warc.gz": {"warcinfo": 1, "request": 22, "response": 22, "metadata": 1, "resource": 2},
    "dolma-sample-0001.warc.gz": {"warcinfo": 1, "request": 15, "response": 15, "metadata": 1, "resource": 2},
    "resiliparse-clueweb-quirk.warc.gz": {"warcinfo": 1, "response": 29},
    "derived/cc2008-arc-sample-1213893279526_0.converted.warc.gz": {"warcinfo": 1, "response": 145},
    # Read past warcio's refusal: ARC records written without the separating newline.
    "copycat-cc2008-small-sample-1213893279526_0.arc.gz": {"arc_header": 1, "response": 145},
    # 36 records, but the file ends 488 bytes short of the last one's Content-Length (see below).
    "josimtext-cc-test.warc.gz": {"response": 35},
}


def _read(source: Path | bytes, **kwargs) -> tuple[list[RawRecord], list[RecordError], list]:
    data = source.read_bytes() if isinstance(source, Path) else source
    items = list(iter_records(io.BytesIO(data), **kwargs))
    records = [item for item in items if isinstance(item, RawRecord)]
    errors = [item for item in items if isinstance(item, RecordError)]
    return records, errors, items


def _counts(records: list[RawRecord]) -> dict[str, int]:
    return dict(Counter(record.rec_type for record in records))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_record_counts_of_every_real_file(name):
    records, errors, _ = _read(WARC_DIR / name)
    assert _counts(records) == EXPECTED[name]
    assert [error.kind for error in errors] == (["truncated"] if name.startswith("josimtext") else [])


def test_per_record_gzip_offsets_are_compressed_and_seekable():
    """Common Crawl's layout: each (offset, length) is one gzip member that holds exactly that record."""
    data = RESILIPARSE.read_bytes()
    records, _, _ = _read(RESILIPARSE)
    for record in records:
        member = gzip.decompress(data[record.offset : record.offset + record.length])
        assert member.startswith(b"WARC/1.0\r\n") and record.record_id.encode() in member
        assert member.count(b"WARC/1.0\r\nWARC-Type") == 1
    assert records[-1].offset + records[-1].length == len(data)


@pytest.mark.parametrize(
    "name", ["resiliparse-warcfile.warc.gz", "aut-example.warc.gz", "dolma-sample-0000.warc.gz"]
)
def test_same_records_offsets_and_bodies_as_warcio(name):
    path = WARC_DIR / name
    expected = []
    with open(path, "rb") as stream:
        archive = ArchiveIterator(stream)
        for record in archive:
            body = record.content_stream().read()
            expected.append(
                (
                    record.rec_headers.get_header("WARC-Record-ID"),
                    archive.get_record_offset(),
                    archive.get_record_length(),
                    body,
                )
            )
    records, _, _ = _read(path)
    assert [(r.record_id, r.offset, r.length, r.body) for r in records] == expected


def test_single_member_gzip_wet_is_read_with_uncompressed_offsets():
    records, errors, _ = _read(WET_SINGLE_MEMBER)
    plain = gzip.decompress(WET_SINGLE_MEMBER.read_bytes())
    assert not errors and len(records) == 26
    for record in records:
        block = plain[record.offset : record.offset + record.length]
        assert block.startswith(b"WARC/1.0\r\n") and record.record_id.encode() in block
    conversions = [record for record in records if record.rec_type == "conversion"]
    assert all(record.url.startswith("http") and record.http_status is None for record in conversions)
    assert (
        sum(len(record.body.decode("utf-8")) for record in conversions) > 300_000
    )  # 319 K chars per the manifest


def test_plain_uncompressed_warc_gives_the_same_records():
    plain = gzip.decompress(RESILIPARSE.read_bytes())
    gz_records, _, _ = _read(RESILIPARSE)
    records, errors, _ = _read(plain)
    assert not errors
    assert [(r.record_id, r.body, r.http_status) for r in records] == [
        (r.record_id, r.body, r.http_status) for r in gz_records
    ]
    for record in records:
        assert plain[record.offset :].startswith(b"WARC/1.0\r\n")


def test_fields_of_a_common_crawl_response():
    records, _, _ = _read(RESILIPARSE)
    response = next(record for record in records if record.rec_type == "response")
    assert response.record_id.startswith("<urn:uuid:") and response.url.startswith("http://")
    assert response.date.startswith("2020-08-")  # CC-MAIN-2020-34
    assert response.http_status == 200 and response.payload_type == "text/html"
    assert response.http_content_type.startswith("text/html")
    assert b"<html" in response.body.lower() and not response.truncated


def test_responses_without_http_headers():
    """DKPro C4CorpusTools output: the block is the minimal HTML itself, with no status line."""
    records, errors, _ = _read(JOSIMTEXT)
    assert all(record.http_status is None and record.http_content_type is None for record in records)
    assert all(record.body.lstrip().startswith(b"<") for record in records)
    assert len(records[0].body) == 7650  # the whole Content-Length is payload
    assert sum(record.truncated for record in records) == 17  # WARC-Truncated headers
    # The last record declares 764 bytes, but the file ends 276 bytes into it.
    assert errors == [RecordError("truncated", errors[0].message, 92407)]
    assert gzip.decompress(JOSIMTEXT.read_bytes())[92407:].startswith(b"WARC/1.0")


def test_cc2008_arc_reads_like_its_warc_conversion():
    arc, arc_errors, _ = _read(COPYCAT_ARC)
    warc, _, _ = _read(CC2008_WARC)
    assert not arc_errors
    arc_responses = [record for record in arc if record.rec_type == "response"]
    warc_responses = [record for record in warc if record.rec_type == "response"]
    assert [(r.url, r.date, r.http_status, r.body) for r in arc_responses] == [
        (r.url, r.date, r.http_status, r.body) for r in warc_responses
    ]
    assert arc_responses[0].date == "2008-05-09T19:02:41Z"  # ARC archive-date as a WARC-Date
    ids = [record.record_id for record in arc]
    assert len(set(ids)) == len(ids) and all(i.startswith("<urn:uuid:") for i in ids)
    assert ids == [record.record_id for record in _read(COPYCAT_ARC)[0]]  # derived ids are stable


def test_max_payload_bytes_cuts_bodies_and_flags_them():
    full, _, _ = _read(RESILIPARSE)
    cut, _, _ = _read(RESILIPARSE, max_payload_bytes=1000)
    assert [(r.offset, r.length) for r in cut] == [(r.offset, r.length) for r in full]
    for small, big in zip(cut, full, strict=True):
        assert small.body == big.body[:1000]
        assert small.truncated == (len(big.body) > 1000)
    assert sum(record.truncated for record in cut) >= 16


def test_truncated_gzip_yields_records_before_the_cut_then_one_error():
    data = RESILIPARSE.read_bytes()
    full, _, _ = _read(RESILIPARSE)
    cut_at = len(data) * 2 // 3
    records, errors, items = _read(data[:cut_at])
    whole = [record for record in full if record.offset + record.length <= cut_at]
    assert [r.record_id for r in records] == [r.record_id for r in whole]
    assert items[-1] == errors[0] and len(errors) == 1
    assert errors[0].kind == "truncated" and errors[0].offset == full[len(whole)].offset


def test_cut_in_the_last_gzip_trailer_keeps_every_record():
    records, errors, _ = _read(RESILIPARSE.read_bytes()[:-3])
    assert len(records) == 50 and [error.kind for error in errors] == ["truncated"]


def test_every_cut_point_ends_in_exactly_one_error():
    data = (WARC_DIR / "whirlwind.warc.gz").read_bytes()
    for cut_at in range(0, len(data), 97):
        records, errors, items = _read(data[:cut_at])
        assert len(errors) == 1 and items[-1] is errors[0], cut_at
        assert errors[0].kind in ("truncated", "empty_file")
    assert len(_read(data)[0]) == 4


def test_plain_warc_cut_mid_record():
    plain = gzip.decompress(RESILIPARSE.read_bytes())
    full, _, _ = _read(plain)
    cut_at = full[10].offset + 500
    records, errors, _ = _read(plain[:cut_at])
    assert len(records) == 10 and [(e.kind, e.offset) for e in errors] == [("truncated", full[10].offset)]


def test_corrupt_gzip_member():
    data = bytearray(RESILIPARSE.read_bytes())
    full, _, _ = _read(RESILIPARSE)
    victim = full[20]
    data[victim.offset + 200 : victim.offset + 260] = bytes(60)
    records, errors, _ = _read(bytes(data))
    assert len(records) == 20 and [(e.kind, e.offset) for e in errors] == [("corrupt_gzip", victim.offset)]


def test_garbage_after_the_last_member():
    records, errors, _ = _read(RESILIPARSE.read_bytes() + b"\x00" * 64)
    assert len(records) == 50 and [error.kind for error in errors] == ["corrupt_gzip"]


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"", "empty_file"),
        (gzip.compress(b""), "empty_file"),
        (b"this is not an archive\r\n" * 100, "unreadable_format"),
        (bytes(range(256)) * 20, "unreadable_format"),
        (b"\x1f\x8b\x08\x00" + bytes(range(256)) * 20, "corrupt_gzip"),
    ],
    ids=["empty", "empty-gzip", "text", "binary", "gzip-magic-then-garbage"],
)
def test_inputs_without_records(data, kind):
    _, errors, items = _read(data)
    assert len(items) == 1 and errors[0].kind == kind and errors[0].offset == 0


def test_other_files_are_not_archives():
    _, errors, items = _read(WARC_DIR / "CC-MAIN-2024-22.warc.paths.gz")  # a gzipped list of paths
    assert len(items) == 1 and errors[0].kind == "unreadable_format"


def test_a_body_that_fails_to_decode_is_skipped_and_reading_goes_on(monkeypatch):
    original = ArcWarcRecord.content_stream

    def failing(self):
        if (
            self.rec_type == "response"
            and self.rec_headers.get_header("WARC-Target-URI") == "http://01spb.ru/company/"
        ):
            raise RuntimeError("decoder failure")
        return original(self)

    monkeypatch.setattr(ArcWarcRecord, "content_stream", failing)
    records, errors, _ = _read(RESILIPARSE)
    assert len(records) == 49 and [(e.kind, e.offset) for e in errors] == [("unreadable_body", 12685)]
    assert [record.offset for record in records[4:6]] == [12265, 31493]  # the records around it


class _FlakyStream:
    """A source that fails like a dropped connection after some bytes."""

    def __init__(self, data: bytes, fail_after: int):
        self.stream, self.fail_after = io.BytesIO(data), fail_after

    def read(self, size: int = -1) -> bytes:
        if self.stream.tell() >= self.fail_after:
            raise ConnectionResetError("connection reset by peer")
        return self.stream.read(size)


def test_source_failures_raise_for_a_retry():
    items = iter_records(_FlakyStream(RESILIPARSE.read_bytes(), 70_000))
    with pytest.raises(SourceError, match="connection reset"):
        for _ in items:
            pass


class _CountingStream:
    def __init__(self, stream):
        self.stream, self.count = stream, 0

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.count += len(data)
        return data


@pytest.mark.parametrize(
    "name", ["aut-example.warc.gz", "copycat-cc2008-small-sample-1213893279526_0.arc.gz"]
)
def test_reading_streams(name):
    """The first record comes out after a small part of a 1-2.5 MB file has been read."""
    with open(WARC_DIR / name, "rb") as raw:
        stream = _CountingStream(raw)
        next(iter_records(stream))
        assert stream.count <= 256 * 1024
