"""A real HTTP server on 127.0.0.1 for the image downloader: good images and every way a web server misbehaves.

Each path is a :class:`Route` (status, headers, body, and faults: failing
first answers, slow or truncated or endless bodies, redirects). The server
records every request (path, Host, User-Agent, time) and how many requests
were in flight per Host at most.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler

from danqing_assets_tests.loopback_http import LoopbackHTTPServer, QuietHandler


@dataclass
class Route:
    body: bytes = b""
    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    fail_first: list[int] = field(default_factory=list)  # answer these statuses to the first requests
    retry_after: str | None = None  # sent with the fail_first answers
    delay_s: float = 0.0  # wait before answering
    trickle_s: float | None = None  # send the body one byte at a time, this far apart
    declared_length: int | None = None  # claim this Content-Length (more than the body: a truncated transfer)
    endless: bool = False  # chunked body that never ends (until the client hangs up)
    location: str | None = None  # redirect target (with a 3xx status)


@dataclass(frozen=True)
class Seen:
    path: str
    host: str
    user_agent: str
    authorization: str | None
    at: float


class ImageFaultServer(LoopbackHTTPServer):
    def __init__(self, routes: dict[str, Route] | None = None) -> None:
        self.routes: dict[str, Route] = dict(routes or {})
        self.requests: list[Seen] = []
        self.max_in_flight: Counter[str] = Counter()  # per Host header
        self.max_total_in_flight = 0
        self._in_flight: Counter[str] = Counter()
        self._lock = threading.Lock()
        super().__init__(self._handler_class())

    def hits(self, path: str, host: str | None = None) -> int:
        return sum(1 for seen in self.requests if seen.path == path and host in (None, seen.host))

    # --- request handling ------------------------------------------------------
    def _enter(self, handler: BaseHTTPRequestHandler) -> str:
        host = handler.headers.get("Host", "")
        with self._lock:
            agent, auth = handler.headers.get("User-Agent", ""), handler.headers.get("Authorization")
            seen = Seen(handler.path, host, agent, auth, time.monotonic())
            self.requests.append(seen)
            self._in_flight[host] += 1
            self.max_in_flight[host] = max(self.max_in_flight[host], self._in_flight[host])
            self.max_total_in_flight = max(self.max_total_in_flight, sum(self._in_flight.values()))
        return host

    def _leave(self, host: str) -> None:
        with self._lock:
            self._in_flight[host] -= 1

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(QuietHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out as separate writes

            def do_GET(self) -> None:
                host = server._enter(self)
                try:
                    route = server.routes.get(self.path.split("?", 1)[0])
                    if route is None:
                        _send_simple(self, 404, b"not found")
                    else:
                        _serve(self, route)
                except (BrokenPipeError, ConnectionResetError, TimeoutError):
                    self.close_connection = True
                finally:
                    server._leave(host)

        return Handler


def _send_simple(handler: BaseHTTPRequestHandler, status: int, body: bytes, headers=()) -> None:
    handler.send_response(status)
    for name, value in headers:
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def _serve(handler: BaseHTTPRequestHandler, route: Route) -> None:
    if route.delay_s:
        time.sleep(route.delay_s)
    if route.fail_first:
        extra = [("Retry-After", route.retry_after)] if route.retry_after is not None else []
        _send_simple(handler, route.fail_first.pop(0), b"try later", extra)
        return
    headers = list(route.headers) + ([("Location", route.location)] if route.location else [])
    if route.endless:
        _serve_endless(handler, route.status, headers)
    elif route.trickle_s is not None or route.declared_length is not None:
        _serve_broken(handler, route, headers)
    else:
        _send_simple(handler, route.status, route.body, headers)


def _serve_endless(handler: BaseHTTPRequestHandler, status: int, headers) -> None:
    handler.send_response(status)
    for name, value in headers:
        handler.send_header(name, value)
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()
    chunk = b"\xff\xd8\xff\xe0" + b"\0" * 65532  # looks like a JPEG, never ends
    deadline = time.monotonic() + 30  # a safety net; the client should hang up long before
    while time.monotonic() < deadline:
        handler.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    handler.close_connection = True


def _serve_broken(handler: BaseHTTPRequestHandler, route: Route, headers) -> None:
    handler.send_response(route.status)
    for name, value in headers:
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(route.declared_length or len(route.body)))
    handler.end_headers()
    if route.trickle_s is None:
        handler.wfile.write(route.body)
    else:
        for i in range(len(route.body)):
            handler.wfile.write(route.body[i : i + 1])
            handler.wfile.flush()
            time.sleep(route.trickle_s)
    handler.wfile.flush()
    handler.close_connection = True  # hang up short of the declared length
