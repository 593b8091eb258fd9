"""Write WARC files laid out the way Common Crawl writes them.

One gzip member per record; a ``warcinfo`` record first; then for every
capture a ``request``, a ``response`` and a ``metadata`` record. Header names,
their order and the digest format follow real CC-MAIN WARCs (2024 layout:
digests on request, response and metadata records). The metadata record points
at its response with ``WARC-Concurrent-To`` only, as Common Crawl does; there
is no ``WARC-Refers-To``. Record ids and dates come from the caller, never from
the clock, so the files are byte-for-byte reproducible.
"""

from __future__ import annotations

import base64
import hashlib
import io
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO
from urllib.parse import urlsplit

from warcio.recordloader import ArcWarcRecord
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

CCBOT_REQUEST_HEADERS = (
    ("User-Agent", "CCBot/2.0 (https://commoncrawl.org/faq/)"),
    ("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
    ("Accept-Language", "en-US,en;q=0.5"),
    ("Accept-Encoding", "br,gzip"),
)


@dataclass(frozen=True)
class Capture:
    """One fetch: what CCBot asked, what the server answered, what CC noted about it."""

    url: str
    ip: str
    date: datetime
    status: str
    response_headers: tuple[tuple[str, str], ...]
    body: bytes
    payload_type: str
    metadata: tuple[tuple[str, str], ...]


def warc_date(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def sha1_digest(data: bytes) -> str:
    """WARC digest notation: ``sha1:`` + base32 of the SHA-1."""
    return "sha1:" + base64.b32encode(hashlib.sha1(data).digest()).decode("ascii")


class CommonCrawlWarcWriter:
    """Writes warcinfo and capture triples with caller-supplied record ids."""

    def __init__(self, stream: BinaryIO, new_record_id: Callable[[], str]) -> None:
        self._writer = WARCWriter(stream, gzip=True, warc_version="1.0")
        self._new_id = new_record_id
        self._warcinfo_id = ""

    def write_warcinfo(self, filename: str, when: datetime, fields: dict[str, str]) -> None:
        body = "".join(f"{name}: {value}\r\n" for name, value in fields.items()).encode("utf-8")
        self._warcinfo_id = self._new_id()
        headers = [
            ("WARC-Type", "warcinfo"),
            ("WARC-Date", warc_date(when)),
            ("WARC-Record-ID", self._warcinfo_id),
            ("Content-Length", "0"),
            ("Content-Type", "application/warc-fields"),
            ("WARC-Filename", filename),
            ("WARC-Block-Digest", sha1_digest(body)),
        ]
        self._write("warcinfo", "", headers, None, body)

    def write_capture(self, capture: Capture) -> str:
        """Write request, response and metadata; return the response's record id."""
        request_id = self._write_request(capture)
        response_id = self._write_response(capture, request_id)
        self._write_metadata(capture, response_id)
        return response_id

    def _write_request(self, capture: Capture) -> str:
        parts = urlsplit(capture.url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        http = StatusAndHeaders(
            f"GET {target} HTTP/1.1",
            [*CCBOT_REQUEST_HEADERS, ("Host", parts.netloc), ("Connection", "Keep-Alive")],
            is_http_request=True,
        )
        record_id = self._new_id()
        headers = self._common_headers("request", capture, record_id, "application/http; msgtype=request")
        headers += [
            ("WARC-IP-Address", capture.ip),
            ("WARC-Target-URI", capture.url),
            *_digests(http, b""),
        ]
        self._write("request", capture.url, headers, http, b"")
        return record_id

    def _write_response(self, capture: Capture, request_id: str) -> str:
        protocol, _, status = f"HTTP/1.1 {capture.status}".partition(" ")
        http = StatusAndHeaders(status, list(capture.response_headers), protocol=protocol)
        record_id = self._new_id()
        headers = self._common_headers("response", capture, record_id, "application/http; msgtype=response")
        headers += [
            ("WARC-Concurrent-To", request_id),
            ("WARC-IP-Address", capture.ip),
            ("WARC-Target-URI", capture.url),
            *_digests(http, capture.body),
            ("WARC-Identified-Payload-Type", capture.payload_type),
        ]
        self._write("response", capture.url, headers, http, capture.body)
        return record_id

    def _write_metadata(self, capture: Capture, response_id: str) -> None:
        body = "".join(f"{name}: {value}\r\n" for name, value in capture.metadata).encode("utf-8") + b"\r\n"
        headers = self._common_headers("metadata", capture, self._new_id(), "application/warc-fields")
        headers += [
            ("WARC-Concurrent-To", response_id),
            ("WARC-Target-URI", capture.url),
            ("WARC-Payload-Digest", sha1_digest(body)),
            ("WARC-Block-Digest", sha1_digest(body)),
        ]
        self._write("metadata", capture.url, headers, None, body)

    def _common_headers(
        self, rec_type: str, capture: Capture, record_id: str, content_type: str
    ) -> list[tuple[str, str]]:
        # Content-Length is a placeholder: warcio replaces it in place, keeping CC's header order.
        return [
            ("WARC-Type", rec_type),
            ("WARC-Date", warc_date(capture.date)),
            ("WARC-Record-ID", record_id),
            ("Content-Length", "0"),
            ("Content-Type", content_type),
            ("WARC-Warcinfo-ID", self._warcinfo_id),
        ]

    def _write(
        self,
        rec_type: str,
        uri: str,
        headers: list[tuple[str, str]],
        http: StatusAndHeaders | None,
        body: bytes,
    ) -> None:
        record: ArcWarcRecord = self._writer.create_warc_record(
            uri,
            rec_type,
            payload=io.BytesIO(body),
            length=len(body),
            warc_headers=StatusAndHeaders("", headers, protocol="WARC/1.0"),
            http_headers=http,
        )
        self._writer.write_record(record)


def _digests(http: StatusAndHeaders, body: bytes) -> list[tuple[str, str]]:
    """Payload and block digests, computed over exactly the bytes warcio will write."""
    http.compute_headers_buffer()
    return [("WARC-Payload-Digest", sha1_digest(body)), ("WARC-Block-Digest", sha1_digest(http.headers_buff + body))]
