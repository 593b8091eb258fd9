"""robots.txt and ``X-Robots-Tag``: a site's say over whether we may take its images.

robots.txt is fetched once per scheme, host and port (requests for a host that
arrive while its robots.txt is on the way wait for that one fetch) and read
with :mod:`urllib.robotparser`. RFC 9309 decides what a failed fetch means: a
4xx answer means no rules (allow all); a 5xx answer or an unreachable server
means disallow all, for this run only (the refusal is marked retryable).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from urllib.robotparser import RobotFileParser

import httpx

from danqing_assets.curation.images.net_guard import BlockedAddress, ResolutionFailed, redact_url
from danqing_assets.curation.images.reasons import DNS_ERROR, ROBOTS_DISALLOWED, SSRF_BLOCKED

log = logging.getLogger(__name__)

ROBOTS_MAX_BYTES = 512 * 1024  # RFC 9309: parse at least 500 KiB
_AI_OPT_OUTS = frozenset({"noai", "noimageai"})
_TOKEN = re.compile(r"[^\s,:;]+")


@dataclass(frozen=True)
class RobotsRules:
    """What one robots.txt allows; or, when it could not be had, the reason every URL there fails with."""

    parser: RobotFileParser | None = None
    failure: str | None = None  # a download reason: robots_disallowed, ssrf_blocked, dns_error
    retryable: bool = False

    def refusal(self, url: str, user_agent: str) -> tuple[str, bool] | None:
        """(reason, retryable) when ``url`` may not be fetched, else None."""
        if self.failure is not None:
            return self.failure, self.retryable
        if self.parser is not None and not self.parser.can_fetch(user_agent, url):
            return ROBOTS_DISALLOWED, False
        return None


def rules_from_response(status: int, body: bytes) -> RobotsRules:
    """RFC 9309 section 2.3.1: 2xx → parse, 4xx (but 429) → allow all, else disallow all (retryable)."""
    parser = RobotFileParser()
    if 200 <= status < 300:
        text = body[:ROBOTS_MAX_BYTES].decode("utf-8", errors="replace").lstrip("\ufeff")
        parser.parse(text.splitlines())
        return RobotsRules(parser)
    if 400 <= status < 500 and status != 429:
        parser.allow_all = True
        return RobotsRules(parser)
    return RobotsRules(failure=ROBOTS_DISALLOWED, retryable=True)


async def load_robots(client: httpx.AsyncClient, robots_url: httpx.URL, timeout_s: float) -> RobotsRules:
    """Fetch and judge one robots.txt; never raises (RFC 9309: unreachable means disallow all)."""
    try:
        async with asyncio.timeout(timeout_s):
            status, body = await fetch_robots(client, robots_url)
    except BlockedAddress:
        return RobotsRules(failure=SSRF_BLOCKED)
    except ResolutionFailed as exc:
        return RobotsRules(failure=DNS_ERROR, retryable=exc.transient)
    except httpx.TooManyRedirects:
        status, body = 404, b""  # RFC 9309: more than five redirects means unavailable
    except (TimeoutError, httpx.TransportError, httpx.DecodingError) as exc:
        log.info("%s unreachable (%s): disallowing the host for this run", robots_url, type(exc).__name__)
        return RobotsRules(failure=ROBOTS_DISALLOWED, retryable=True)
    except Exception as exc:  # never let one host's robots.txt end the run
        log.warning("%s: unexpected %s: %s", robots_url, type(exc).__name__, redact_url(exc))
        return RobotsRules(failure=ROBOTS_DISALLOWED, retryable=True)
    return rules_from_response(status, body)


async def fetch_robots(client: httpx.AsyncClient, robots_url: httpx.URL) -> tuple[int, bytes]:
    """GET a robots.txt (following up to the client's redirect limit), keeping at most ROBOTS_MAX_BYTES."""
    async with client.stream("GET", robots_url, follow_redirects=True) as response:
        body = bytearray()
        if 200 <= response.status_code < 300:
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) >= ROBOTS_MAX_BYTES:
                    break
        return response.status_code, bytes(body)


def robots_key(url: httpx.URL) -> tuple[str, str, int]:
    port = url.port or (443 if url.scheme == "https" else 80)
    return url.scheme, url.host, port


def robots_url_for(url: httpx.URL) -> httpx.URL:
    return url.copy_with(path="/robots.txt", query=None, fragment=None)


class RobotsCache:
    """Single-flight, size-bounded cache of :class:`RobotsRules` per (scheme, host, port).

    ``load(robots_url)`` does the fetch; it must not raise. The oldest hosts are
    forgotten beyond ``max_hosts`` so a run over millions of hosts stays small.
    """

    def __init__(self, load: Callable[[httpx.URL], Awaitable[RobotsRules]], max_hosts: int = 10_000) -> None:
        self._load = load
        self._max_hosts = max_hosts
        self._entries: OrderedDict[tuple[str, str, int], asyncio.Future[RobotsRules]] = OrderedDict()
        self.fetches = 0

    async def rules_for(self, url: httpx.URL) -> RobotsRules:
        key = robots_key(url)
        future = self._entries.get(key)
        if future is None:
            future = asyncio.ensure_future(self._load(robots_url_for(url)))
            self._entries[key] = future
            self.fetches += 1
            while len(self._entries) > self._max_hosts:
                self._entries.popitem(last=False)
        else:
            self._entries.move_to_end(key)
        # shield: one waiter's deadline must not cancel the fetch the others wait for.
        return await asyncio.shield(future)

    async def aclose(self) -> None:
        pending = [f for f in self._entries.values() if not f.done()]
        for future in pending:
            future.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        self._entries.clear()


def forbids_ai(header_values: Iterable[str]) -> bool:
    """Whether ``X-Robots-Tag`` values opt out of AI use (``noai`` / ``noimageai``).

    A user-agent prefix (``otherbot: noai``) is not used to narrow the opt-out:
    a site that says no to some AI crawler is taken to say no to us too.
    """
    return any(token.lower() in _AI_OPT_OUTS for value in header_values for token in _TOKEN.findall(value))
