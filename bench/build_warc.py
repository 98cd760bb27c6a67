"""Build a deterministic benchmark WARC from the real HTML pages in `bench/data/extraction`.

    python bench/build_warc.py SRC_DIR OUT_DIR [--shards 4] [--pages N] [--copies K]

SRC_DIR holds `trafilatura_eval.tar.xz` (923 pages under `eval/`; `evaldata.json` maps real URLs to files)
and `readability_test_pages.tar.xz` (130 `test-pages/<name>/source.html`); both are read in place.
Each page becomes one WARC/1.1 `response` record (gzip per record) with an `HTTP/1.1 200` header whose
`Content-Type` carries the page's `<meta>` charset when it declares one. Pages are dealt round-robin
into `bench-00000.warc.gz`, ..., each opening with a `warcinfo` record as Common Crawl's files do.
Record ids are uuid5 of the URL and the date is fixed, so every run writes the same bytes.

`--copies K` writes every page K times, to reach a throughput corpus of several thousand records from
the 1,053 real pages. Copy k > 0 has the URL with the fragment COPY_MARK + k (so its own record id) and
goes to the shard after copy k - 1's: with K <= shards no shard holds a page twice, so no process that
keeps state across the pages of one file (datatrove's trafilatura duplicate cache) sees a page again.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import tarfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

TRAFILATURA_TARBALL = "trafilatura_eval.tar.xz"
READABILITY_TARBALL = "readability_test_pages.tar.xz"
WARC_DATE = "2024-01-01T00:00:00Z"
ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://tokenmill.bench/")
COPY_MARK = "#copy-"
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)


@dataclass(frozen=True)
class Page:
    url: str
    html: bytes


def _read_files(tarball: Path) -> dict[str, bytes]:
    """Every regular file in a compressed tarball by name, read in one sequential pass (random access into a
    gzip stream decompresses from the start again for each backward seek)."""
    with tarfile.open(tarball, "r:*") as tar:
        return {member.name: tar.extractfile(member).read() for member in tar if member.isfile()}


def _trafilatura_pages(tarball: Path) -> list[Page]:
    """The eval pages, sorted by file name. A file evaldata.json does not map from an http(s) URL (37
    keys are labels such as `hard::site-page.html`) gets a made-up URL. One listed URL holds a space,
    which a WARC-Target-URI may not: it is percent-encoded."""
    files = _read_files(tarball)
    evaldata = json.loads(files["evaldata.json"])
    url_of_file = {
        entry["file"]: url for url, entry in evaldata.items() if url.startswith(("http://", "https://"))
    }
    pages = []
    for path in sorted(name for name in files if name.startswith("eval/")):
        name = path.rpartition("/")[2]
        url = url_of_file.get(name, f"https://trafilatura.test/{name}").replace(" ", "%20")
        pages.append(Page(url=url, html=files[path]))
    return pages


def _readability_pages(tarball: Path) -> list[Page]:
    """Each test directory's source.html, sorted by directory, at https://readability.test/<dir>/."""
    files = _read_files(tarball)
    return [
        Page(url=f"https://readability.test/{path.split('/')[-2]}/", html=files[path])
        for path in sorted(name for name in files if name.endswith("/source.html"))
    ]


def read_pages(src_dir: Path) -> list[Page]:
    """Every real page in SRC_DIR, in a fixed order."""
    return _trafilatura_pages(src_dir / TRAFILATURA_TARBALL) + _readability_pages(
        src_dir / READABILITY_TARBALL
    )


def meta_charset(html: bytes) -> str | None:
    """The charset a page declares in a `<meta>` tag near its start, lower-cased, if any."""
    match = _META_CHARSET.search(html[:16384])
    return match.group(1).decode("ascii").lower() if match else None


def record_id(url: str) -> str:
    return f"<urn:uuid:{uuid.uuid5(ID_NAMESPACE, url)}>"


def _write_warcinfo(writer: WARCWriter, filename: str, pages: int) -> None:
    info = {
        "software": "tokenmill bench/build_warc.py",
        "format": "WARC File Format 1.1",
        "description": f"{pages} real pages from trafilatura's eval set and mozilla/readability's test pages",
    }
    record = writer.create_warcinfo_record(filename, info)
    record.rec_headers.replace_header("WARC-Record-ID", record_id(f"warcinfo:{filename}"))
    record.rec_headers.replace_header("WARC-Date", WARC_DATE)
    writer.write_record(record)


def _write_response(writer: WARCWriter, page: Page) -> None:
    charset = meta_charset(page.html)
    content_type = f"text/html; charset={charset}" if charset else "text/html"
    http_headers = StatusAndHeaders(
        "200 OK",
        [("Content-Type", content_type), ("Content-Length", str(len(page.html)))],
        protocol="HTTP/1.1",
    )
    record = writer.create_warc_record(
        page.url,
        "response",
        payload=io.BytesIO(page.html),
        length=len(page.html),
        http_headers=http_headers,
        warc_headers_dict={
            "WARC-Record-ID": record_id(page.url),
            "WARC-Date": WARC_DATE,
            "WARC-Identified-Payload-Type": "text/html",
        },
    )
    writer.write_record(record)


def is_copy(url: str) -> bool:
    """True for the URL of a page's second or later copy."""
    return COPY_MARK in url


def deal(pages: list[Page], shards: int, copies: int) -> list[list[Page]]:
    """Page i's copy k into shard (i + k) % shards, copy 0 of every page first."""
    dealt: list[list[Page]] = [[] for _ in range(shards)]
    for copy in range(copies):
        for index, page in enumerate(pages):
            url = f"{page.url}{COPY_MARK}{copy}" if copy else page.url
            dealt[(index + copy) % shards].append(Page(url=url, html=page.html))
    return dealt


def build_warc(
    src_dir: Path, out_dir: Path, shards: int = 4, pages: int | None = None, copies: int = 1
) -> tuple[list[Path], int]:
    """Write the pages (the first `pages`, or all), `copies` times each, into `shards` WARC files;
    return their paths and the number of records written (warcinfo aside)."""
    selected = read_pages(src_dir)[:pages]
    if len({page.url for page in selected}) != len(selected):
        raise ValueError("two pages share a URL, so their record ids would collide")
    if not 1 <= copies <= shards:
        raise ValueError(f"copies must be between 1 and the number of shards ({shards}), not {copies}")
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for shard, shard_pages in enumerate(deal(selected, shards, copies)):
        path = out_dir / f"bench-{shard:05d}.warc.gz"
        with path.open("wb") as handle:
            writer = WARCWriter(handle, gzip=True, warc_version="1.1")
            _write_warcinfo(writer, path.name, len(shard_pages))
            for page in shard_pages:
                _write_response(writer, page)
        paths.append(path)
    return paths, len(selected) * copies


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("src_dir", type=Path, help="directory with the two extraction tarballs")
    parser.add_argument("out_dir", type=Path, help="where to write bench-NNNNN.warc.gz")
    parser.add_argument("--shards", type=int, default=4, help="number of WARC files (default 4)")
    parser.add_argument("--pages", type=int, default=None, help="use only the first N pages (default all)")
    parser.add_argument("--copies", type=int, default=1, help="write every page K times (default 1)")
    args = parser.parse_args()
    paths, pages = build_warc(args.src_dir, args.out_dir, args.shards, args.pages, args.copies)
    total = sum(path.stat().st_size for path in paths)
    print(f"wrote {pages:,} records into {len(paths)} WARC files, {total:,} bytes, in {args.out_dir}")


if __name__ == "__main__":
    main()
