"""A real HTTP server on 127.0.0.1 that misbehaves on purpose: 5xx answers, broken transfers, ignored ranges."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from danqing_assets_tests.loopback_http import LoopbackHTTPServer, QuietHandler


@dataclass
class Faults:
    status_first: list[int] = field(default_factory=list)  # answer these statuses to the first requests
    break_after: list[int] = field(default_factory=list)  # cut the body after N bytes, one entry per request
    ignore_range: bool = False
    retry_after: str | None = "0"


class FaultServer(LoopbackHTTPServer):
    def __init__(self, files: dict[str, bytes], faults: Faults | None = None) -> None:
        self.files, self.faults = files, faults or Faults()
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        server = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                server.requests.append((self.path, self.headers.get("Range")))
                faults = server.faults
                if faults.status_first:
                    self.send_response(faults.status_first.pop(0))
                    if faults.retry_after is not None:
                        self.send_header("Retry-After", faults.retry_after)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
                if match and not faults.ignore_range:
                    start = int(match.group(1))
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.send_header("Content-Type", "application/octet-stream")
                self.end_headers()
                payload = body[start:]
                if faults.break_after:
                    payload = payload[: faults.break_after.pop(0)]
                    self.wfile.write(payload)
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(payload)

        super().__init__(Handler)
