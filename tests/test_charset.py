"""Charset decoding on real crawled pages whose charsets are known: CJK, Cyrillic, Western, EUC-JP."""

from __future__ import annotations

import re

import pytest

from tests.conftest import WARC_DIR
from tokenmill.pipeline.ingest.charset import decode_html
from tokenmill.pipeline.ingest.warc import RawRecord, iter_records


def _responses(name: str) -> dict[str, RawRecord]:
    with open(WARC_DIR / name, "rb") as stream:
        return {
            r.url: r for r in iter_records(stream) if isinstance(r, RawRecord) and r.rec_type == "response"
        }


@pytest.fixture(scope="module")
def cc_pages() -> dict[str, RawRecord]:
    return _responses("resiliparse-warcfile.warc.gz")


@pytest.fixture(scope="module")
def cc2008_pages() -> dict[str, RawRecord]:
    return _responses("derived/cc2008-arc-sample-1213893279526_0.converted.warc.gz")


def _decode(record: RawRecord, content_type: str | None = None) -> tuple[str, str]:
    result = decode_html(record.body, content_type if content_type is not None else record.http_content_type)
    assert result is not None
    return result


@pytest.mark.parametrize(
    ("url", "codec", "sample"),
    [
        ("http://037426.cn/", "gb18030", "的"),  # HTTP charset=gb2312 -> its superset
        ("http://0760.jxtdw.com/area/sanxiang/", "gb18030", "的"),  # gb2312, 108 KB
        ("http://041696.com/15477/list_6_4.html", "gb18030", "的"),  # only <meta charset=gbk>
        ("http://01spb.ru/company/", "cp1251", "и"),  # HTTP and meta windows-1251
        (
            "http://06.live-radsport.ch/tippspiel/stats_140_petzi.html",
            "cp1252",
            "Höhepunkte",
        ),  # meta iso-8859-1
        ("http://003338.cn/l41/481397.html", "utf-8", "的"),
    ],
)
def test_declared_charsets_of_real_cc_pages(cc_pages, url, codec, sample):
    text, used = _decode(cc_pages[url])
    assert used == codec and sample in text and "\ufffd" not in text


def test_every_cc_page_decodes_cleanly(cc_pages):
    for record in cc_pages.values():
        text, _ = _decode(record)
        assert "\ufffd" not in text and "<html" in text.lower()


def test_euc_jp_clueweb_pages_decode_to_japanese():
    pages = _responses("resiliparse-clueweb-quirk.warc.gz")
    assert len(pages) == 29
    for record in pages.values():
        text, codec = _decode(record)
        assert codec == "euc_jp" and "の" in text and "\ufffd" not in text


def test_wrong_http_charset_falls_through_to_meta(cc_pages):
    """Real windows-1251 bytes served with a false UTF-8 header: the <meta> charset decides."""
    text, codec = _decode(cc_pages["http://01spb.ru/company/"], "text/html; charset=utf-8")
    assert codec == "cp1251" and "и" in text


def test_unknown_label_falls_through(cc_pages):
    text, codec = _decode(
        cc_pages["http://041696.com/15477/list_6_4.html"], "text/html; charset=x-no-such-charset"
    )
    assert codec == "gb18030" and "的" in text


def test_a_hostile_label_cannot_pick_a_non_web_codec(cc_pages):
    for label in ("base64", "unicode_escape", "utf-7", "rot13"):
        _, codec = _decode(cc_pages["http://003338.cn/l41/481397.html"], f"text/html; charset={label}")
        assert codec == "utf-8"


def test_declared_utf8_page_with_one_stray_byte_keeps_its_utf8(cc2008_pages):
    """aecdaily.com declares UTF-8 and is UTF-8 (activité, mêmes, –), except one cp1252 byte (0x92):
    reading it as cp1252 would garble every accented character, so it stays UTF-8 with one U+FFFD."""
    record = cc2008_pages["http://www.aecdaily.com/en/1585910"]
    assert record.http_content_type == "text/html; charset=UTF-8;"
    text, codec = _decode(record)
    assert codec == "utf-8" and text.count("\ufffd") == 1
    assert "activité" in text and "Ã" not in text


def test_undeclared_legacy_page_is_detected():
    record = next(iter(_responses("resiliparse-clueweb-quirk.warc.gz").values()))
    body = re.sub(rb"charset=EUC-JP", b"", record.body, flags=re.IGNORECASE)
    text, codec = decode_html(body, "text/html")
    assert codec in ("euc_jp", "euc_jis_2004", "euc_jisx0213") and "の" in text and "\ufffd" not in text


def test_detection_prefers_windows_1252_on_a_latin_tie(cc2008_pages):
    """An undeclared French page: charset-normalizer ties cp1250 with cp1252 and would pick cp1250."""
    record = cc2008_pages["http://visionarymarketing.com/blagues.html"]
    text, codec = _decode(record)
    assert codec == "cp1252" and "après" in text and "č" not in text


def test_latin1_label_means_windows_1252():
    body = b"<html><body>\x93quoted\x94 caf\xe9</body></html>"
    assert decode_html(body, "text/html; charset=ISO-8859-1") == (
        "<html><body>\u201cquoted\u201d caf\u00e9</body></html>",
        "cp1252",
    )


def test_bom_beats_a_contradicting_header():
    body = b"\xef\xbb\xbf<p>caf\xc3\xa9</p>"
    assert decode_html(body, "text/html; charset=iso-8859-1") == ("<p>café</p>", "utf-8")
    assert decode_html(b"\xff\xfe" + "<p>é</p>".encode("utf-16-le"), None) == ("<p>é</p>", "utf-16-le")


def test_meta_claiming_utf16_means_utf8():
    body = '<meta charset="utf-16"><p>café</p>'.encode()
    assert decode_html(body, None) == ('<meta charset="utf-16"><p>café</p>', "utf-8")


def test_multibyte_character_cut_at_the_payload_limit(cc_pages):
    body = cc_pages["http://003338.cn/l41/481397.html"].body
    cut = body[: body.rindex("的".encode()) + 2]  # 2 of the character's 3 bytes
    text, codec = decode_html(cut, "text/html; charset=utf-8")
    assert codec == "utf-8" and text.endswith(body[: body.rindex("的".encode())].decode()[-20:])


def test_binary_payload_is_not_text(cc2008_pages):
    pdf = next(record for record in cc2008_pages.values() if record.http_content_type == "application/pdf")
    assert decode_html(pdf.body, None) is None


def test_declared_utf8_with_a_few_stray_bytes_stays_utf8():
    """One pasted Latin-1 byte must not make the whole page decode as another charset."""
    page = (
        "<html><head><meta charset=utf-8></head><body>" + "Schön und gut. " * 200 + "</body></html>"
    ).encode()
    damaged = page[:500] + b"\xe9" + page[500:]
    text, codec = decode_html(damaged, "text/html; charset=UTF-8")
    assert codec == "utf-8"
    assert text.count("Schön") == 200 and text.count("\ufffd") == 1
