"""Download the images of the pairs: politely, safely, and with a reason for every failure.

Politely: robots.txt and ``X-Robots-Tag: noai`` are obeyed, a few requests per
host at a time, retries back off and honour ``Retry-After``, and every request
says who we are. Safely: every connection goes through the SSRF guard
(:mod:`.net_guard`), bodies are capped while they stream and every image has a
deadline, so a hostile server can neither reach our network nor stall or flood
us. Each URL ends as one :class:`DownloadResult` whose ``reason`` is one of the
counters in :mod:`.reasons`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from danqing_assets.curation.images.host_slots import HostSlots
from danqing_assets.curation.images.net_guard import (
    BlockedAddress,
    NetworkPolicy,
    ResolutionFailed,
    guarded_client,
    redact_url,
)
from danqing_assets.curation.images.reasons import (
    CONNECTION_ERROR,
    DNS_ERROR,
    REASONS,
    SSRF_BLOCKED,
    TIMEOUT,
    TOO_MANY_REDIRECTS,
    X_ROBOTS_NOAI,
    http_status,
)
from danqing_assets.curation.images.robots import RobotsCache, RobotsRules, forbids_ai, load_robots
from danqing_assets.curation.images.sniff import read_image, release, sniff_image_format
from danqing_assets.curation.images.urls import prepare_url, resolve_redirect, retry_delay

__all__ = ["REASONS", "DownloadConfig", "DownloadResult", "NetworkPolicy", "download_all", "fetch_images",
           "sniff_image_format"]  # fmt: skip

log = logging.getLogger(__name__)

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_ACCEPT = "image/avif,image/webp,image/apng,image/*;q=0.9,*/*;q=0.5"


def _retry_status(status: int) -> bool:
    return status in (408, 429) or 500 <= status < 600


@dataclass(frozen=True)
class DownloadConfig:
    """How the downloader behaves; ``total_timeout_s`` bounds one attempt (all hops and the body) of one image."""

    user_agent: str = "danqing-assets/0.1 (image-text dataset curation; honours robots.txt and X-Robots-Tag noai)"
    concurrency: int = 64
    per_host_concurrency: int = 4
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 20.0
    total_timeout_s: float = 30.0
    max_bytes: int = 20 * 1024 * 1024
    retries: int = 3
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 30.0
    retry_after_cap_s: float = 60.0
    max_redirects: int = 5
    respect_robots: bool = True
    respect_x_robots: bool = True
    robots_cache_hosts: int = 10_000
    policy: NetworkPolicy = field(default_factory=NetworkPolicy)

    def __post_init__(self) -> None:
        if self.concurrency < 1 or self.per_host_concurrency < 1:
            raise ValueError("concurrency and per_host_concurrency must be at least 1")
        if self.retries < 0 or self.max_redirects < 0 or self.max_bytes < 1:
            raise ValueError("retries and max_redirects must be >= 0, max_bytes >= 1")

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> DownloadConfig:
        """From :class:`danqing_assets.settings.Settings` (the ``download_*``, allowlist and override fields)."""
        total = settings.download_timeout_s
        values: dict[str, Any] = dict(
            user_agent=settings.download_user_agent,
            concurrency=settings.download_concurrency,
            per_host_concurrency=settings.download_per_host_concurrency,
            connect_timeout_s=min(10.0, total),
            read_timeout_s=min(20.0, total),
            total_timeout_s=total,
            max_bytes=settings.download_max_bytes,
            retries=settings.download_retries,
            max_redirects=settings.download_max_redirects,
            respect_robots=settings.download_respect_robots,
            policy=NetworkPolicy.from_strings(settings.network_allowlist, settings.host_overrides),
        )
        return cls(**{**values, **overrides})


@dataclass(slots=True)
class DownloadResult:
    """How one URL ended; ``data`` holds the image bytes when ``ok``."""

    url: str  # as given
    ok: bool
    data: bytes | None = None
    reason: str | None = None  # None when ok
    status: int | None = None  # last HTTP status seen
    final_url: str | None = None  # after redirects, without credentials
    image_format: str | None = None  # sniffed: "jpeg", "png", ...
    attempts: int = 0
    retryable: bool = False  # whether a later run should try this URL again


@dataclass(slots=True)
class _Outcome:
    """One attempt's end: a result without its URL, plus whether to retry now."""

    reason: str | None
    status: int | None = None
    final_url: str | None = None
    data: bytes | None = None
    image_format: str | None = None
    retry: bool = False  # try again in this run
    retryable: bool = False
    retry_after: str | None = None


class _Downloader:
    """One run's shared state: the guarded client, the host slots and the robots.txt cache."""

    def __init__(self, config: DownloadConfig) -> None:
        self.config = config
        timeout = httpx.Timeout(config.read_timeout_s, connect=config.connect_timeout_s, pool=None)
        headers = {"Accept": _ACCEPT, "Accept-Encoding": "identity"}
        self.client = guarded_client(
            config.policy,
            user_agent=config.user_agent,
            timeout=timeout,
            max_keepalive=config.concurrency,
            headers=headers,
        )
        self.slots = HostSlots(config.per_host_concurrency, config.concurrency)
        self.robots = RobotsCache(self._load_robots, config.robots_cache_hosts)

    async def aclose(self) -> None:
        await self.robots.aclose()
        await self.client.aclose()

    async def fetch(self, raw_url: str) -> DownloadResult:
        """Never raises: every URL gets a result."""
        try:
            return await self._fetch(raw_url)
        except Exception as exc:  # a bug or an exotic error must not end the whole shard
            log.warning("%s: unexpected %s: %s", redact_url(raw_url), type(exc).__name__, redact_url(exc))
            return DownloadResult(raw_url, ok=False, reason=CONNECTION_ERROR, retryable=True)

    async def _fetch(self, raw_url: str) -> DownloadResult:
        url = prepare_url(raw_url)
        if isinstance(url, str):
            return DownloadResult(raw_url, ok=False, reason=url)
        attempts = 0
        while True:
            attempts += 1
            outcome = await self._attempt(url)
            if not outcome.retry or attempts > self.config.retries:
                break
            cfg = self.config
            await asyncio.sleep(
                retry_delay(attempts, outcome.retry_after, cfg.backoff_base_s, cfg.backoff_cap_s, cfg.retry_after_cap_s)
            )
        ok = outcome.reason is None
        return DownloadResult(raw_url, ok, outcome.data, outcome.reason, outcome.status, outcome.final_url,
                              outcome.image_format, attempts, retryable=not ok and outcome.retryable)  # fmt: skip

    async def _attempt(self, url: httpx.URL) -> _Outcome:
        trail = [url]  # the hops so far; failures are reported at the last one
        try:
            return await self._follow(trail)
        except (TimeoutError, httpx.TimeoutException):
            return _Outcome(TIMEOUT, final_url=str(trail[-1]), retry=True, retryable=True)
        except BlockedAddress as exc:
            log.info("blocked %s: %s", trail[-1], exc.reason)
            return _Outcome(SSRF_BLOCKED, final_url=str(trail[-1]))
        except ResolutionFailed as exc:
            return _Outcome(DNS_ERROR, final_url=str(trail[-1]), retryable=exc.transient)
        except (httpx.TransportError, httpx.DecodingError) as exc:
            log.debug("%s: %s: %s", trail[-1], type(exc).__name__, exc)
            return _Outcome(CONNECTION_ERROR, final_url=str(trail[-1]), retry=True, retryable=True)

    async def _follow(self, trail: list[httpx.URL]) -> _Outcome:
        """GET ``trail[0]``, following redirects (each hop checked against robots.txt and, when it connects, the guard).

        The attempt's deadline starts when its first request gets a host slot:
        time spent queueing behind other downloads from the same host is not
        the server's fault.
        """
        url = trail[0]
        seen, deadline = {url}, None
        for _ in range(self.config.max_redirects + 1):
            if refusal := await self._robots_refusal(url):
                return _Outcome(refusal[0], final_url=str(url), retryable=refusal[1])
            async with self.slots.hold(url.raw_host.decode("ascii")):
                deadline = deadline or asyncio.get_running_loop().time() + self.config.total_timeout_s
                async with asyncio.timeout_at(deadline):
                    outcome, location = await self._request(url)
            if outcome is not None:
                return outcome
            target = resolve_redirect(url, location or "")
            if isinstance(target, str):
                return _Outcome(target, final_url=str(url))
            if target in seen:
                break
            seen.add(target)
            url = target
            trail.append(url)
        return _Outcome(TOO_MANY_REDIRECTS, final_url=str(url))

    async def _request(self, url: httpx.URL) -> tuple[_Outcome | None, str | None]:
        """One GET: its outcome, or (None, Location) when it redirects."""
        response = await self.client.send(self.client.build_request("GET", url), stream=True)
        try:
            location = response.headers.get("Location")
            if response.status_code in _REDIRECTS and location:
                return None, location
            return await self._finish(response, url), None
        finally:
            await release(response)

    async def _finish(self, response: httpx.Response, url: httpx.URL) -> _Outcome:
        status = response.status_code
        if _retry_status(status):
            return _Outcome(http_status(status), status, str(url), retry=True, retryable=True,
                            retry_after=response.headers.get("Retry-After"))  # fmt: skip
        if not 200 <= status < 300:
            return _Outcome(http_status(status), status, str(url))
        if self.config.respect_x_robots and forbids_ai(response.headers.get_list("X-Robots-Tag")):
            return _Outcome(X_ROBOTS_NOAI, status, str(url))
        reason, data, image_format = await read_image(response, self.config.max_bytes)
        return _Outcome(reason, status, str(url), data, image_format)

    async def _robots_refusal(self, url: httpx.URL) -> tuple[str, bool] | None:
        if not self.config.respect_robots:
            return None
        rules = await self.robots.rules_for(url)
        return rules.refusal(str(url), self.config.user_agent)

    async def _load_robots(self, robots_url: httpx.URL) -> RobotsRules:
        """robots.txt through the same client, host slots and deadline as the images."""
        async with self.slots.hold(robots_url.raw_host.decode("ascii")):
            return await load_robots(self.client, robots_url, self.config.total_timeout_s)


async def fetch_images(urls: Iterable[str], config: DownloadConfig | None = None) -> AsyncIterator[DownloadResult]:
    """Download ``urls``, yielding each result as it completes (not in input order).

    At most ``4 * concurrency`` URLs are taken from ``urls`` at a time, so a
    lazy iterable of millions of URLs costs only that window of memory (at
    worst window x ``max_bytes`` of bodies, if the consumer lags); of those,
    ``concurrency`` requests (``per_host_concurrency`` per host) are on the
    wire at once. Closing the iterator early cancels what is in flight.
    """
    config = config or DownloadConfig()
    downloader = _Downloader(config)
    window = 4 * config.concurrency
    source: Iterator[str] = iter(urls)
    pending: set[asyncio.Task[DownloadResult]] = set()
    reasons: Counter[str] = Counter()
    try:
        while True:
            for url in source:
                pending.add(asyncio.create_task(downloader.fetch(url)))
                if len(pending) >= window:
                    break
            if not pending:
                break
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                result = task.result()
                reasons[result.reason or "ok"] += 1
                yield result
    finally:
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await downloader.aclose()
        log.info("image downloads: %s; robots.txt fetched for %d hosts", dict(reasons), downloader.robots.fetches)


def download_all(urls: Iterable[str], config: DownloadConfig | None = None) -> list[DownloadResult]:
    """Download ``urls`` from synchronous code (starts its own event loop); results in completion order."""

    async def collect() -> list[DownloadResult]:
        return [result async for result in fetch_images(urls, config)]

    return asyncio.run(collect())
