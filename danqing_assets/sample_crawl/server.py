"""A local HTTP server for the sample mirror: the demo's stand-in for the internet.

Routing is by host name. A request for a host under the sample suffix (for
example ``img.danqing-sample.test``) is answered from ``<root>/www/<host>/``;
any other host (``127.0.0.1:PORT``) is answered from ``<root>/`` itself, so
``collinfo.json`` and ``crawl-data/...`` live at the server's base URL. The
host comes from the ``Host`` header or, when a client uses the server as an
HTTP proxy, from the absolute URL in the request line: either way a downloader
reaches the sample hosts without DNS.

It speaks just enough HTTP for the pipeline: GET and HEAD, one byte range per
request (206/416), ``Accept-Ranges: bytes``; no directory listings, and no
path, however encoded, can leave the directory it is served from.
"""

from __future__ import annotations

import logging
import mimetypes
import re
import socket
import threading
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from urllib.parse import unquote, urlsplit

from danqing_assets.settings import get_settings

log = logging.getLogger(__name__)

_CONTENT_TYPES = {
    ".warc.gz": "application/octet-stream",  # what data.commoncrawl.org sends; never Content-Encoding
    ".gz": "application/gzip",
    ".json": "application/json",
    ".txt": "text/plain; charset=utf-8",
    ".html": "text/html",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".pdf": "application/pdf",
}
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_HOSTNAME = re.compile(r"^[a-z0-9.-]+$")
_CHUNK = 64 * 1024


class SampleCrawlServer:
    """Serve a sample mirror on 127.0.0.1 from a background thread.

    >>> with SampleCrawlServer(root) as server:      # doctest: +SKIP
    ...     fetch(server.base_url + "collinfo.json")
    """

    def __init__(self, root: Path, *, port: int = 0, host_suffix: str | None = None) -> None:
        self.root = Path(root).resolve()
        self.host_suffix = (host_suffix or get_settings().sample_host_suffix).lower()
        self._requested_port = port
        self._httpd: _MirrorHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the server is not running")
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self) -> SampleCrawlServer:
        if self._httpd is not None:
            raise RuntimeError("the server is already running")
        self._httpd = _MirrorHTTPServer(("127.0.0.1", self._requested_port), self.root, self.host_suffix)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1}, name="sample-crawl-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, drop open keep-alive connections, close the socket, join the thread."""
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.close_open_connections()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join()
        self._httpd = None
        self._thread = None

    def __enter__(self) -> SampleCrawlServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class _MirrorHTTPServer(ThreadingHTTPServer):
    """Tracks live connections so that stop() does not leave handler threads serving."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], root: Path, host_suffix: str) -> None:
        self.root = root
        self.host_suffix = host_suffix
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _MirrorHandler)

    def process_request(self, request, client_address) -> None:  # type: ignore[no-untyped-def]
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request) -> None:  # type: ignore[no-untyped-def]
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_open_connections(self) -> None:
        with self._open_lock:
            live = list(self._open)
        for conn in live:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by the peer

    def handle_error(self, request, client_address) -> None:  # type: ignore[no-untyped-def]
        # Clients hanging up mid-transfer are routine; keep them off stderr.
        log.debug("error serving %s", client_address, exc_info=True)


class _MirrorHandler(BaseHTTPRequestHandler):
    server: _MirrorHTTPServer
    protocol_version = "HTTP/1.1"
    server_version = "DanqingSampleCrawl/1.0"
    timeout = 30  # idle keep-alive connections are closed after this many seconds

    def do_GET(self) -> None:
        self._serve(send_body=True)

    def do_HEAD(self) -> None:
        self._serve(send_body=False)

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s - %s", self.address_string(), format % args)

    def _serve(self, *, send_body: bool) -> None:
        path = self._resolve()
        if path is None:
            self.send_error(HTTPStatus.FORBIDDEN)
            return
        if not path.is_file():
            self.send_error(HTTPStatus.NOT_FOUND)
            return
        size = path.stat().st_size
        byte_range = _parse_range(self.headers.get("Range"), size)
        if byte_range == "unsatisfiable":
            self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        start, end = byte_range or (0, size - 1)
        self.send_response(HTTPStatus.PARTIAL_CONTENT if byte_range else HTTPStatus.OK)
        self.send_header("Content-Type", _content_type(path))
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Last-Modified", formatdate(path.stat().st_mtime, usegmt=True))
        if byte_range:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if send_body:
            _copy_bytes(path, start, end - start + 1, self.wfile)

    def _resolve(self) -> Path | None:
        """The file a request names, or None if the path escapes the directory it is served from."""
        if self.path.startswith(("http://", "https://")):  # absolute form: we are someone's proxy
            target = urlsplit(self.path)
            host, raw_path = target.hostname or "", target.path
        else:
            host, raw_path = _hostname(self.headers.get("Host", "")), self.path.split("?", 1)[0].split("#", 1)[0]
        host = host.rstrip(".")
        routed = host.endswith(self.server.host_suffix) and _HOSTNAME.match(host)
        base = (self.server.root / "www" / host) if routed else self.server.root
        relative = unquote(raw_path).lstrip("/")
        if "\x00" in relative:
            return None
        candidate = (base / relative).resolve()
        return candidate if candidate.is_relative_to(base.resolve()) else None


def _hostname(host_header: str) -> str:
    """``Host`` header without port, lower-cased (IPv6 literals keep their brackets)."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host.split("]")[0] + "]"
    return host.split(":")[0]


def _parse_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """A single ``bytes=`` range as (first, last), "unsatisfiable", or None to send it all.

    Several ranges, or a malformed one, are answered with the whole file, which
    RFC 9110 allows; only a well-formed range beyond the end earns a 416.
    """
    match = _RANGE.match(header.strip()) if header else None
    if match is None or match.groups() == ("", ""):
        return None
    first, last = match.groups()
    if first == "":
        suffix = int(last)
        return (max(0, size - suffix), size - 1) if suffix > 0 and size > 0 else "unsatisfiable"
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size:
        return "unsatisfiable"
    if end < start:
        return None
    return start, end


def _content_type(path: Path) -> str:
    name = path.name.lower()
    for suffix, content_type in _CONTENT_TYPES.items():
        if name.endswith(suffix):
            return content_type
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def _copy_bytes(path: Path, start: int, length: int, out) -> None:  # type: ignore[no-untyped-def]
    with path.open("rb") as src:
        src.seek(start)
        remaining = length
        while remaining > 0:
            chunk = src.read(min(_CHUNK, remaining))
            if not chunk:
                break
            out.write(chunk)
            remaining -= len(chunk)
