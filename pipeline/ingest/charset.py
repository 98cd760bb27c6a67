"""Turning HTML bytes into text with the right charset. UTF-8 is never assumed.

Candidates are tried in order: a byte-order mark, the HTTP Content-Type charset, the HTML `<meta>` charset,
then detection. A declared charset wins only if the bytes decode with it strictly, because real pages
often declare one charset and are written in another.

The BOM comes before the HTTP header, as in the WHATWG encoding standard and in every browser: a BOM is
unambiguous, and a header that contradicts it is wrong.

Declared labels are widened to the supersets that browsers use, as WHATWG specifies. Pages labelled
iso-8859-1 are really windows-1252 (curly quotes at 0x80-0x9f), and pages labelled gb2312 use GBK
characters. Decoding with the narrow codec would fail or lose text.
"""

from __future__ import annotations

import codecs
import re

from charset_normalizer import from_bytes

_META_WINDOW = 4096
_DETECT_WINDOW = 64 * 1024

_BOMS = [  # longest first: the UTF-32 LE BOM starts with the UTF-16 LE one
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
]

# WHATWG labels that Python does not know.
_LABEL_ALIASES = {"windows-874": "cp874", "x-sjis": "cp932", "windows-31j": "cp932", "x-euc-jp": "euc_jp"}
# Narrow codecs (as codecs.lookup names them) -> the superset that browsers decode them with.
_SUPERSETS = {
    "iso8859-1": "cp1252",
    "ascii": "cp1252",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "shift_jis": "cp932",
    "euc_kr": "cp949",
    "tis-620": "cp874",
}
# Codecs that Python has but no web page can be in. A hostile label must not select them.
_NOT_WEB = {"utf-7", "idna", "punycode", "unicode-escape", "raw-unicode-escape", "undefined"}
# A <meta> that claims UTF-16 sits in bytes that were read as ASCII, so it cannot be UTF-16 (WHATWG).
_META_UTF16 = {"utf-16", "utf-16-le", "utf-16-be"}

_HTTP_CHARSET = re.compile(r"""charset\s*=\s*["']?\s*([^\s"';,]+)""", re.IGNORECASE)
_META_CHARSET = re.compile(rb"""<meta[^>]*?charset\s*=\s*["']?\s*([\w.:+-]+)""", re.IGNORECASE)


def _codec(label: str) -> str | None:
    """The Python codec for a declared label, widened to its WHATWG superset; None if unknown."""
    label = label.strip().lower()
    try:
        name = codecs.lookup(_LABEL_ALIASES.get(label, label)).name
        b"\0\0\0\0".decode(name)  # LookupError for bytes-to-bytes codecs such as base64 or zlib
    except (LookupError, UnicodeDecodeError):
        return None
    return None if name in _NOT_WEB else _SUPERSETS.get(name, name)


def _decode_strict(body: bytes, codec: str) -> str | None:
    """Decode without errors, except that a multi-byte character cut off at the very end is allowed.

    A payload cut at a size limit (Common Crawl's, or max_payload_bytes) often ends mid-character.
    """
    try:
        return codecs.getincrementaldecoder(codec)("strict").decode(body, final=False)
    except UnicodeDecodeError:
        return None


def _declared(body: bytes, http_content_type: str | None) -> list[str]:
    """Declared codecs in order of authority: the HTTP header first, then the first <meta> charset."""
    found = []
    if http_content_type and (match := _HTTP_CHARSET.search(http_content_type)):
        found.append(_codec(match.group(1)))
    if match := _META_CHARSET.search(body[:_META_WINDOW]):
        codec = _codec(match.group(1).decode("ascii"))
        found.append("utf-8" if codec in _META_UTF16 else codec)
    return [codec for codec in found if codec is not None]


def _detect(body: bytes) -> tuple[str, str] | None:
    """Strict UTF-8 first, because legacy-encoded text is almost never valid UTF-8 by accident. Then
    charset-normalizer on a bounded prefix, because it is slow on large inputs.

    charset-normalizer breaks exact ties between Latin code pages by name, which turns French "è" into
    Czech "č" (cp1250). Browsers fall back to windows-1252 for unlabelled Western pages, so a tie goes
    to windows-1252 here too.
    """
    if (text := _decode_strict(body, "utf-8")) is not None:
        return text, "utf-8"
    matches = from_bytes(body[:_DETECT_WINDOW])
    best = matches.best()
    if best is None:
        return None
    tied = [m for m in matches if (m.chaos, m.coherence) == (best.chaos, best.coherence)]
    if any("cp1252" in m.could_be_from_charset for m in tied):
        codec = "cp1252"
    else:
        name = codecs.lookup(best.encoding).name
        codec = _SUPERSETS.get(name, name)
    text = _decode_strict(body, codec)
    if text is None:  # the guess held for the prefix only; keep the text and mark the bad bytes
        text = body.decode(codec, errors="replace")
    return text, codec


def decode_html(body: bytes, http_content_type: str | None) -> tuple[str, str] | None:
    """Return (text, codec) for an HTML payload, or None when no charset fits (binary data)."""
    for bom, codec in _BOMS:
        if body.startswith(bom) and (text := _decode_strict(body[len(bom) :], codec)) is not None:
            return text, codec
    declared = _declared(body, http_content_type)
    for codec in declared:
        if (text := _decode_strict(body, codec)) is not None:
            return text, codec
    if "utf-8" in declared and (text := _nearly_utf8(body)) is not None:
        return text, "utf-8"
    return _detect(body)


def _nearly_utf8(body: bytes) -> str | None:
    """A page declared UTF-8 that holds real multi-byte UTF-8 characters and a few stray bytes (a pasted
    Latin-1 character) is still UTF-8: decode it with U+FFFD for those bytes rather than re-detect,
    which would misread every other character. Without any real UTF-8 character (ASCII plus a stray
    byte) detection knows better."""
    text = body.decode("utf-8", errors="replace")
    invalid = text.count("\ufffd") - body.decode("utf-8", errors="ignore").count("\ufffd")
    has_utf8 = any(ord(char) > 127 and char != "\ufffd" for char in text)
    return text if has_utf8 and invalid <= max(3, len(body) // 10_000) else None
