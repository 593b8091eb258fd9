"""Decode an HTML body: charset from the HTTP header, then ``<meta>``, then detection.

Pages that declare gb2312 or gbk are decoded as gb18030 (a superset both in
practice and by standard: real "gb2312" pages often hold characters outside
GB2312), Big5 as Big5-HKSCS, and Latin-1 as Windows-1252, as browsers do.
"""

from __future__ import annotations

import codecs
import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass

from resiliparse.parse.encoding import detect_encoding

_HEADER_CHARSET = re.compile(r"charset\s*=\s*[\"']?([A-Za-z0-9._:-]+)", re.I)
# The HTML prescan looks at the first 1024 bytes; real pages put <meta> later
# (long <title>, inline scripts), so we look a little further.
_META_CHARSET = re.compile(
    rb"<meta[^>]{0,512}?charset\s*=\s*[\"']?\s*([A-Za-z0-9._:-]+)", re.I
)
_PRESCAN_BYTES = 8192
_MAX_BAD_BYTE_SHARE = 0.001

_SUPERSETS = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "gb18030": "gb18030",
    "big5": "big5hkscs",
    "big5hkscs": "big5hkscs",
    "latin_1": "cp1252",
    "iso8859_1": "cp1252",
    "ascii": "cp1252",
    "shift_jis": "cp932",
    "euc_kr": "cp949",
}


@dataclass(frozen=True, slots=True)
class DecodedHtml:
    text: str
    charset: str  # Python codec name actually used
    source: str  # http_header | meta | detected | fallback
    replaced: bool = False  # undecodable bytes were replaced with U+FFFD


# Labels and Content-Type values repeat page after page: both lookups are cached (bounded).
@functools.lru_cache(maxsize=1024)
def normalize_charset(label: str | None) -> str | None:
    """A Python codec name for a charset label, widened to the superset browsers use; None if unknown."""
    if not label:
        return None
    label = label.strip().strip("\"'").lower()
    if label in ("x-gbk", "cp936", "windows-936", "gb_2312-80", "x-gb2312", "euc-cn"):
        label = "gbk"
    if label in ("x-sjis", "sjis", "ms_kanji"):
        label = "shift_jis"
    try:
        name = codecs.lookup(label).name
    except LookupError:
        return None
    if name in ("utf-16-le", "utf-16-be", "utf-16", "utf-32"):
        return None  # an ASCII-compatible page cannot declare UTF-16 and mean it
    return _SUPERSETS.get(name.replace("-", "_"), name)


@functools.lru_cache(maxsize=1024)
def header_charset(content_type: str) -> str | None:
    m = _HEADER_CHARSET.search(content_type or "")
    return m.group(1) if m else None


def meta_charset(body: bytes) -> str | None:
    m = _META_CHARSET.search(body[:_PRESCAN_BYTES])
    return m.group(1).decode("ascii") if m else None


def _candidates(body: bytes, content_type: str) -> Iterator[tuple[str, str]]:
    """(codec, source) in the browser's order of trust; detection runs only if it is reached."""
    seen: set[str] = set()
    labels = (
        ("http_header", lambda: header_charset(content_type)),
        ("meta", lambda: meta_charset(body)),
        ("detected", lambda: detect_encoding(body, html5_compatible=False) or "utf-8"),
        ("fallback", lambda: "utf-8"),
    )
    for source, label in labels:
        codec = normalize_charset(label())
        if codec and codec not in seen:
            seen.add(codec)
            yield codec, source


def decode_html(body: bytes, content_type: str = "") -> DecodedHtml:
    """Decode with the first charset that fits, in the browser's order of trust."""
    if body.startswith(codecs.BOM_UTF8):
        return DecodedHtml(body[3:].decode("utf-8", "replace"), "utf-8", "bom")
    first: tuple[str, str] | None = None
    for codec, source in _candidates(body, content_type):
        first = first or (codec, source)
        try:
            return DecodedHtml(body.decode(codec), codec, source)
        except UnicodeDecodeError:
            pass
        # A long page with a stray bad byte is still in its declared charset (browsers
        # replace the byte); many bad bytes mean the declaration is wrong: try the next.
        text = body.decode(codec, "replace")
        if text.count("\ufffd") <= len(body) * _MAX_BAD_BYTE_SHARE:
            return DecodedHtml(text, codec, source, replaced=True)
    assert first is not None  # "fallback" always yields utf-8
    codec, source = first
    return DecodedHtml(body.decode(codec, "replace"), codec, source, replaced=True)
