"""Read a Common Crawl WARC file as HTML pages, each paired with its language tag.

Common Crawl writes request, response and metadata records per capture; the
metadata record (``WARC-Concurrent-To`` the response) carries CLD2's language
guess as ``languages-cld2``. The reader holds back one response until its
metadata record arrives, so pages can be selected by language before any HTML
is parsed.

Two interchangeable backends: FastWARC (fast, the default) and warcio (the
reference reader). Both report the same pages and the same skip reasons.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, Literal

import orjson  # ~7x faster than json on the small languages-cld2 line read for every page

ReaderName = Literal["fastwarc", "warcio"]


@dataclass(slots=True)
class PageRecord:
    """An HTTP 200 HTML response, its body complete and content-decoded."""

    url: str
    offset: int  # byte offset of the record in the WARC file, as Common Crawl's index gives it
    fetch_date: str  # WARC-Date
    record_id: str
    content_type: str
    body: bytes
    languages: tuple[str, ...] | None = None  # ISO 639-3 codes from languages-cld2; None: no tag


@dataclass(slots=True)
class SkippedRecord:
    """A response record that is not used, and why."""

    reason: str
    url: str | None = None
    offset: int | None = None
    detail: str = ""


@dataclass(slots=True)
class _Response:
    url: str
    offset: int
    fetch_date: str
    record_id: str
    status: int | None
    content_type: str
    content_encoding: str
    body: bytes
    truncated: bool
    too_large: bool


def iter_pages(
    stream: BinaryIO, *, reader: ReaderName = "fastwarc", max_body_bytes: int = 5 << 20
) -> Iterator[PageRecord | SkippedRecord]:
    """Yield every HTML response of a WARC stream as a page or as a skip with its reason.

    A read error (corrupt or truncated gzip, not a WARC at all) ends the file with
    one ``warc_read_error`` skip; what was read before it stands.
    """
    responses = _fastwarc_records if reader == "fastwarc" else _warcio_records
    pending: _Response | None = None
    try:
        for item in responses(stream, max_body_bytes):
            if isinstance(item, _Response):
                if pending is not None:
                    yield _to_page(pending, None)
                pending = item
            else:  # a metadata record: (refers-to id, body)
                refers_to, meta = item
                if pending is not None and refers_to == pending.record_id:
                    yield _to_page(pending, meta)
                    pending = None
    except Exception as exc:  # noqa: BLE001 - any reader failure ends this file with a counted reason
        if pending is not None:
            yield _to_page(pending, None)
            pending = None
        yield SkippedRecord("warc_read_error", detail=f"{type(exc).__name__}: {exc}"[:500])
    if pending is not None:
        yield _to_page(pending, None)


def parse_cld2_languages(metadata: bytes) -> tuple[str, ...] | None:
    """ISO 639-3 codes from a Common Crawl metadata record's ``languages-cld2`` line."""
    for line in metadata.splitlines():
        if line.startswith(b"languages-cld2:"):
            try:
                value = orjson.loads(line.split(b":", 1)[1])
                langs = value.get("languages", [])
                return tuple(str(lang.get("code-iso-639-3") or lang.get("code", "")) for lang in langs)
            except (ValueError, AttributeError, TypeError):  # orjson.JSONDecodeError is a ValueError
                return None
    return None


def _to_page(resp: _Response, metadata: bytes | None) -> PageRecord | SkippedRecord:
    """The page, or why not; its metadata record's language tag is parsed only for a page."""
    if resp.status is None:
        return _skip(resp, "not_http")
    if resp.status != 200:
        return _skip(resp, "http_status_not_200", str(resp.status))
    if not _is_html(resp.content_type):
        return _skip(resp, "not_html", resp.content_type[:100])
    if resp.too_large:
        return _skip(resp, "body_too_large")
    if resp.truncated:
        return _skip(resp, "truncated_record", f"body cut at {len(resp.body)} bytes")
    try:
        body = _decode_content(resp.body, resp.content_encoding, 64 << 20)
    except (zlib.error, ValueError) as exc:
        return _skip(resp, "content_decoding_error", str(exc)[:200])
    languages = parse_cld2_languages(metadata) if metadata is not None else None
    return PageRecord(resp.url, resp.offset, resp.fetch_date, resp.record_id, resp.content_type, body, languages)


def _skip(resp: _Response, reason: str, detail: str = "") -> SkippedRecord:
    return SkippedRecord(reason, resp.url, resp.offset, detail)


def _is_html(content_type: str) -> bool:
    mime = content_type.split(";", 1)[0].strip().lower()
    return mime in ("text/html", "application/xhtml+xml", "")


def _decode_content(body: bytes, encoding: str, limit: int) -> bytes:
    """Undo a gzip/deflate Content-Encoding, bounded against bombs.

    Common Crawl stores payloads already decoded but keeps the original header, so a
    body that does not start like compressed data is taken as it is.
    """
    enc = encoding.strip().lower()
    if enc in ("gzip", "x-gzip") and body[:2] == b"\x1f\x8b":
        return _bounded_inflate(zlib.decompressobj(16 + zlib.MAX_WBITS), body, limit)
    if enc == "deflate" and body[:1] in (b"\x78",):
        return _bounded_inflate(zlib.decompressobj(), body, limit)
    return body


def _bounded_inflate(decomp, data: bytes, limit: int) -> bytes:
    out = decomp.decompress(data, limit)
    if decomp.unconsumed_tail:
        raise ValueError(f"decompressed body exceeds {limit} bytes")
    return out


# --- backends ------------------------------------------------------------------
def _fastwarc_records(stream: BinaryIO, max_body: int) -> Iterator[_Response | tuple[str, bytes]]:
    from fastwarc.warc import ArchiveIterator, WarcHeader, WarcRecordType

    # Typed header keys: a str key costs ~10x more (the binding first fails to read it as a WarcHeader).
    metadata, concurrent_to = WarcRecordType.metadata, WarcHeader.WARC_CONCURRENT_TO
    target_uri, warc_date = WarcHeader.WARC_TARGET_URI, WarcHeader.WARC_DATE
    types = WarcRecordType.response | WarcRecordType.metadata
    for rec in ArchiveIterator(stream, record_types=types, parse_http=False):
        headers = rec.headers
        if rec.record_type == metadata:
            yield headers.get(concurrent_to, ""), rec.reader.read(1 << 20)
            continue
        # positional fields, no keyword dict: this runs for every record of the file, selected or not
        url, offset, fetch_date = headers.get(target_uri, ""), rec.stream_pos, headers.get(warc_date, "")
        try:
            rec.parse_http(quirks_mode=True)
        except OSError:
            yield _Response(url, offset, fetch_date, rec.record_id, None, "", "", b"", False, False)
            continue
        http = rec.http_headers
        expected = rec.content_length
        body = rec.reader.read(max_body + 1)
        yield _Response(
            url, offset, fetch_date, rec.record_id,
            http.status_code,
            http.get("Content-Type", "") or "",
            http.get("Content-Encoding", "") or "",
            body,
            len(body) < expected and len(body) <= max_body,  # truncated
            len(body) > max_body,  # too large
        )  # fmt: skip


def _warcio_records(stream: BinaryIO, max_body: int) -> Iterator[_Response | tuple[str, bytes]]:
    from warcio.archiveiterator import ArchiveIterator

    records = ArchiveIterator(stream, no_record_parse=False, ensure_http_headers=False)
    for rec in records:
        if rec.format != "warc":  # warcio falls back to reading ARC; anything else here is garbage
            raise ValueError(f"not a WARC record (read as {rec.format!r}) at offset {records.offset}")
        if rec.rec_type == "metadata":
            yield rec.rec_headers.get_header("WARC-Concurrent-To", ""), rec.raw_stream.read(1 << 20)
            continue
        if rec.rec_type != "response":
            continue
        headers = rec.rec_headers
        common = dict(
            url=headers.get_header("WARC-Target-URI", ""),
            offset=records.offset,  # get_record_offset() would consume the body
            fetch_date=headers.get_header("WARC-Date", ""),
            record_id=headers.get_header("WARC-Record-ID", ""),
        )
        http = rec.http_headers
        if http is None or not http.get_statuscode().isdigit():
            yield _Response(**common, status=None, content_type="", content_encoding="", body=b"", truncated=False, too_large=False)
            continue
        body = rec.raw_stream.read(max_body + 1)
        yield _Response(
            **common,
            status=int(http.get_statuscode()),
            content_type=http.get_header("Content-Type", "") or "",
            content_encoding=http.get_header("Content-Encoding", "") or "",
            body=body,
            truncated=rec.raw_stream.limit > 0 and len(body) <= max_body,
            too_large=len(body) > max_body,
        )
