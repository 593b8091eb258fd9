"""Common Crawl client: the crawl list, a crawl's WARC paths, and streamed WARC files.

Reads from Common Crawl's public HTTPS endpoint, any mirror URL (the bundled
sample crawl is served this way) or a local directory holding ``crawl-data/``.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urljoin, urlparse

import httpx

from ..curation.crawl_ids import parse_warc_paths, validate_crawl_id, warc_paths_key
from .http_stream import ResumableHttpStream, RetryPolicy, fetch_bytes


@dataclass(frozen=True)
class CrawlInfo:
    id: str
    name: str


class CommonCrawlClient:
    def __init__(
        self,
        base_url: str,
        collinfo_url: str,
        *,
        timeout_s: float = 60.0,
        policy: RetryPolicy | None = None,
        read_buffer: int = 1 << 20,
    ) -> None:
        self.base_url = base_url
        self.collinfo_url = collinfo_url
        self.policy = policy or RetryPolicy()
        self._read_buffer = read_buffer
        self._local_root = _local_dir(base_url)
        # Connect fast, but let a slow body read take the full timeout.
        self._http = httpx.Client(timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0)), follow_redirects=True)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> CommonCrawlClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"CommonCrawlClient(base_url={self.base_url!r})"

    # --- listings -----------------------------------------------------------
    def list_crawls(self) -> list[CrawlInfo]:
        """Crawls in the crawl list (newest first, as Common Crawl orders them); invalid ids are an error."""
        raw = self._read_small(self.collinfo_url)
        try:
            entries = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ValueError(f"crawl list {self.collinfo_url} is not JSON: {exc}") from None
        if not isinstance(entries, list):
            raise ValueError(f"crawl list {self.collinfo_url} is not a JSON list")
        return [CrawlInfo(id=validate_crawl_id(e["id"]), name=str(e.get("name", ""))) for e in entries]

    def warc_paths(self, crawl_id: str) -> list[str]:
        """Every WARC file of a crawl, as paths relative to the data endpoint."""
        key = warc_paths_key(crawl_id)
        return parse_warc_paths(self._read_small(self.url_for(key)), crawl_id)

    def url_for(self, path: str) -> str:
        if self._local_root is not None:
            return str(self._local_root / path)
        return urljoin(self.base_url.rstrip("/") + "/", path)

    # --- WARC files -----------------------------------------------------------
    @contextmanager
    def open_warc(self, path: str) -> Iterator[BinaryIO]:
        """Stream one WARC file (still gzipped); a broken HTTP transfer resumes with Range."""
        if ".." in path.split("/"):
            raise ValueError(f"refusing path with '..': {path!r}")
        if self._local_root is not None:
            with open(self._local_root / path, "rb") as fh:
                yield fh
            return
        raw = ResumableHttpStream(self._http, self.url_for(path), self.policy)
        with io.BufferedReader(raw, buffer_size=self._read_buffer) as stream:
            yield stream

    def _read_small(self, url: str) -> bytes:
        local = _local_dir(url)
        if local is not None:
            return local.read_bytes()
        return fetch_bytes(self._http, url, self.policy)


def _local_dir(base: str) -> Path | None:
    """The local path a base URL or location names, or None for http(s)."""
    if base.startswith(("http://", "https://")):
        return None
    if base.startswith("file:"):
        return Path(urlparse(base).path)
    return Path(base)
