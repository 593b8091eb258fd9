"""Streaming HTTP reads that survive flaky servers.

A Common Crawl WARC file is about 1 GB; it is read as a stream (never held whole),
and a transfer that breaks in the middle resumes where it stopped with a
``Range`` request instead of starting over.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
USER_AGENT = "danqing-assets/0.1 (+https://github.com/danqing-assets; dataset curation)"


class HttpFetchError(IOError):
    """A URL could not be fetched within the retry budget, or answered with a final error."""


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        """Exponential backoff, or the server's ``Retry-After`` seconds when it gives one."""
        if retry_after and retry_after.strip().isdigit():
            return min(float(retry_after), self.max_backoff_s)
        return min(self.backoff_s * 2 ** (attempt - 1), self.max_backoff_s)


def _is_transient(exc: Exception) -> bool:
    return isinstance(exc, (httpx.TransportError, httpx.TimeoutException))


def fetch_bytes(client: httpx.Client, url: str, policy: RetryPolicy) -> bytes:
    """GET a small resource (a crawl list, a paths file) with bounded retries."""
    with ResumableHttpStream(client, url, policy) as stream:
        return stream.read()


class ResumableHttpStream(io.RawIOBase):
    """A read-only raw stream over an HTTP GET that resumes broken transfers.

    Retries 429/5xx and transport errors with exponential backoff; after a break
    it asks for ``Range: bytes=<position>-`` and checks the server honoured it.
    The body is passed through undecoded (WARC files are gzip *files*, not a
    gzip transfer encoding).
    """

    def __init__(self, client: httpx.Client, url: str, policy: RetryPolicy | None = None) -> None:
        super().__init__()
        self.url = url
        self.policy = policy or RetryPolicy()
        self.resumes = 0
        self.size: int | None = None
        self._client = client
        self._position = 0
        self._response: httpx.Response | None = None
        self._chunks: Iterator[bytes] | None = None
        self._pending = b""
        self._eof = False
        self._open()

    # --- io.RawIOBase -------------------------------------------------------
    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        # Not seekable, but readers (FastWARC) ask where they are.
        return self._position

    def readinto(self, buffer) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        while not self._pending and not self._eof:
            self._pending = self._next_chunk()
        n = min(len(view), len(self._pending))
        view[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        self._position += n
        return n

    def close(self) -> None:
        self._close_response()
        super().close()

    # --- internals ----------------------------------------------------------
    def _next_chunk(self) -> bytes:
        attempt = 0
        while True:
            try:
                assert self._chunks is not None
                chunk = next(self._chunks, None)
                if chunk is None:
                    self._check_complete()
                    self._eof = True
                    return b""
                return chunk
            except (httpx.TransportError, httpx.TimeoutException) as exc:
                attempt += 1
                if attempt >= self.policy.attempts:
                    raise HttpFetchError(f"{self.url}: transfer broke at byte {self._position}: {exc}") from exc
                log.warning("%s: transfer broke at byte %d (%s); resuming", self.url, self._position, exc)
                time.sleep(self.policy.delay(attempt))
                self.resumes += 1
                self._open()

    def _check_complete(self) -> None:
        consumed = self._position + len(self._pending)
        if self.size is not None and consumed < self.size:
            # A clean close before Content-Length is reached is a broken transfer too.
            raise httpx.RemoteProtocolError(f"connection closed at byte {consumed} of {self.size}")

    def _open(self) -> None:
        self._close_response()
        start = self._position + len(self._pending)
        headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
        if start:
            headers["Range"] = f"bytes={start}-"
        for attempt in range(1, self.policy.attempts + 1):
            try:
                request = self._client.build_request("GET", self.url, headers=headers)
                response = self._client.send(request, stream=True)
            except (httpx.TransportError, httpx.TimeoutException) as exc:
                if attempt == self.policy.attempts:
                    raise HttpFetchError(f"{self.url}: {exc}") from exc
                time.sleep(self.policy.delay(attempt))
                continue
            if response.status_code in RETRYABLE_STATUS and attempt < self.policy.attempts:
                retry_after = response.headers.get("Retry-After")
                response.close()
                log.warning("%s: HTTP %d, retrying", self.url, response.status_code)
                time.sleep(self.policy.delay(attempt, retry_after))
                continue
            self._accept(response, start)
            return
        raise HttpFetchError(f"{self.url}: gave up after {self.policy.attempts} attempts")

    def _accept(self, response: httpx.Response, start: int) -> None:
        status = response.status_code
        if status not in (200, 206):
            response.close()
            raise HttpFetchError(f"{self.url}: HTTP {status}")
        chunks = response.iter_raw(1 << 16)
        if start and status == 200:
            # The server ignored Range: skip what we already have.
            chunks = _skip(chunks, start)
        elif status == 206:
            content_range = response.headers.get("Content-Range", "")
            if not content_range.startswith(f"bytes {start}-"):
                response.close()
                raise HttpFetchError(f"{self.url}: asked for bytes {start}-, got Content-Range {content_range!r}")
        if self.size is None:
            length = response.headers.get("Content-Length")
            if length is not None and length.isdigit():
                self.size = int(length) + (start if status == 206 else 0)
        self._response, self._chunks = response, chunks

    def _close_response(self) -> None:
        if self._response is not None:
            self._response.close()
            self._response = None


def _skip(chunks: Iterator[bytes], n: int) -> Iterator[bytes]:
    for chunk in chunks:
        if n >= len(chunk):
            n -= len(chunk)
            continue
        yield chunk[n:]
        n = 0
        yield from chunks
