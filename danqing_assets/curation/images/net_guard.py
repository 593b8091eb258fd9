"""The SSRF guard: image URLs come from strangers' web pages, so no request may reach our own network.

A URL like ``http://169.254.169.254/latest/meta-data/`` or a hostname whose DNS
answer is ``10.0.0.5`` would otherwise make the downloader fetch internal
services. The check runs where the socket is opened (a custom httpcore network
backend), so it covers the first request, every redirect hop and robots.txt
alike, and the socket is opened to the very address that was vetted: there is
no second DNS lookup an attacker could answer differently (DNS rebinding).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import socket
import ssl
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.cookiejar import CookieJar, DefaultCookiePolicy

import httpcore
import httpx

from danqing_assets.curation.images.ip_rules import (
    AllowEntry,
    IPAddress,
    blocked_reason,
    parse_ip_literal,
    parse_target,
)

__all__ = ["BlockedAddress", "GuardedBackend", "GuardedTransport", "NetworkPolicy", "ResolutionFailed",
           "blocked_reason", "guarded_client", "parse_ip_literal", "redact_url", "system_resolver"]  # fmt: skip

log = logging.getLogger(__name__)

Resolver = Callable[[str, int], list[str]]

_USERINFO = re.compile(r"^((?:[a-z][a-z0-9+.-]*:)?//)[^/?#]*@", re.I)
_USERINFO_ANYWHERE = re.compile(r"(//)[^/\s'\"@?#]*@")
# httpx logs request URLs and httpcore's DEBUG traces echo raw headers (a server's Location may carry a password).
_HTTP_LOGGERS = ("httpx", "httpcore.connection", "httpcore.http11", "httpcore.http2", "httpcore.proxy",
                 "httpcore.socks")  # fmt: skip


class BlockedAddress(Exception):
    """A connection would reach an address the policy refuses (loopback, private, ...)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ResolutionFailed(Exception):
    """A hostname did not resolve; ``transient`` when DNS said "try again"."""

    def __init__(self, host: str, detail: str, transient: bool = False) -> None:
        super().__init__(f"{host}: {detail}")
        self.transient = transient


def redact_url(url: object) -> str:
    """The URL without ``user:password@``, for logs and messages."""
    return _USERINFO.sub(r"\1", str(url), count=1)


class _RedactCredentials(logging.Filter):
    """Strips ``user:password@`` from URLs anywhere in a log message (runs only for records that are emitted)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "@" in message:
            record.msg, record.args = _USERINFO_ANYWHERE.sub(r"\1", message), ()
        return True


def _install_log_redaction() -> None:
    for name in _HTTP_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _RedactCredentials) for f in logger.filters):
            logger.addFilter(_RedactCredentials())


_install_log_redaction()


def system_resolver(host: str, port: int) -> list[str]:
    """All addresses ``getaddrinfo`` gives for a TCP connection (blocking; call it in a thread)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def _split(text: str) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


@dataclass(frozen=True)
class NetworkPolicy:
    """Which addresses connections may reach.

    ``allowlist``: IPs, CIDRs or ``ip:port`` / ``[v6]:port`` admitted although
    not public. ``host_overrides``: hostname → (ip, port or None), like curl's
    ``--resolve``; a key ``*.example.test`` matches every subdomain. Overridden
    targets are vetted like resolved ones, so a loopback override needs an
    allowlist entry too. ``resolver``: (host, port) → IP strings, blocking.
    """

    allowlist: tuple[str, ...] = ()
    host_overrides: Mapping[str, tuple[str, int | None]] = field(default_factory=dict)
    resolver: Resolver = system_resolver
    _entries: tuple[AllowEntry, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        allow = tuple(self.allowlist) if not isinstance(self.allowlist, str) else tuple(_split(self.allowlist))
        object.__setattr__(self, "allowlist", allow)
        object.__setattr__(self, "_entries", tuple(AllowEntry.parse(entry) for entry in allow))
        overrides = {_norm_host(k): v for k, v in dict(self.host_overrides).items()}
        object.__setattr__(self, "host_overrides", overrides)

    @classmethod
    def from_strings(
        cls, allowlist: str = "", host_overrides: str = "", resolver: Resolver = system_resolver
    ) -> NetworkPolicy:
        """From the settings ``network_allowlist`` ("ip, cidr, ip:port") and ``host_overrides`` ("host=ip:port,...")."""
        overrides: dict[str, tuple[str, int | None]] = {}
        for pair in _split(host_overrides):
            host, sep, target = pair.partition("=")
            if not sep or not host.strip():
                raise ValueError(f"host override {pair!r} is not host=ip:port")
            overrides[host.strip()] = parse_target(target)
        return cls(allowlist=tuple(_split(allowlist)), host_overrides=overrides, resolver=resolver)

    def override_for(self, host: str) -> tuple[str, int | None] | None:
        host = _norm_host(host)
        if host in self.host_overrides:
            return self.host_overrides[host]
        for key, target in self.host_overrides.items():
            if key.startswith("*.") and host.endswith(key[1:]):
                return target
        return None

    def check(self, ip: IPAddress, port: int, host: str = "") -> None:
        """Raise :class:`BlockedAddress` unless a connection to (ip, port) is allowed."""
        why = blocked_reason(ip)
        if why is None or any(entry.admits(ip, port) for entry in self._entries):
            return
        target = f"{host} -> {ip}" if host and host != str(ip) else str(ip)
        raise BlockedAddress(f"{target} port {port} is {why}")

    async def vet(self, host: str, port: int) -> list[tuple[str, int]]:
        """Resolve ``host`` and check every address; the (ip, port) pairs to connect to."""
        host = _norm_host(host)
        override = self.override_for(host)
        if override is not None:
            ip_text, override_port = override
            addresses, port = [ip_text], override_port or port
        elif (literal := parse_ip_literal(host)) is not None:
            addresses = [str(literal)]
        else:
            addresses = await self._resolve(host, port)
        ips = list(dict.fromkeys(_parse_resolved(host, a) for a in addresses))
        if not ips:
            raise ResolutionFailed(host, "no addresses")
        for ip in ips:
            self.check(ip, port, host)
        return [(str(ip), port) for ip in ips]

    async def _resolve(self, host: str, port: int) -> list[str]:
        try:
            return list(await asyncio.to_thread(self.resolver, host, port))
        except socket.gaierror as exc:
            raise ResolutionFailed(host, str(exc), transient=exc.errno == socket.EAI_AGAIN) from None
        except (OSError, UnicodeError, ValueError) as exc:
            raise ResolutionFailed(host, str(exc)) from None


def _norm_host(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


def _parse_resolved(host: str, address: str) -> IPAddress:
    try:
        return ipaddress.ip_address(str(address).split("%", 1)[0])
    except ValueError:
        raise BlockedAddress(f"{host} resolved to unparsable address {address!r}") from None


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """An httpcore network backend that vets every TCP connection against a :class:`NetworkPolicy`.

    httpcore takes TLS SNI and the Host header from the request's origin, not
    from the address given here, so certificates are still checked against the
    hostname.
    """

    def __init__(self, policy: NetworkPolicy, inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self.policy = policy
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        targets = await self.policy.vet(host, port)
        error: Exception | None = None
        for ip, target_port in targets:
            log.debug("connecting to %s via %s port %d", host, ip, target_port)
            try:
                return await self._inner.connect_tcp(
                    ip, target_port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error

    async def connect_unix_socket(self, path, timeout=None, socket_options=None):  # type: ignore[override]
        raise BlockedAddress("unix sockets are not allowed")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """``httpx.AsyncHTTPTransport`` whose connection pool opens sockets through :class:`GuardedBackend`.

    httpx 0.28 has no public switch for the network backend, so the pool the
    parent class would build is built here instead (never via proxies: they
    would connect on our behalf, past the guard).
    """

    def __init__(
        self,
        policy: NetworkPolicy,
        *,
        verify: ssl.SSLContext | bool = True,
        limits: httpx.Limits = httpx.Limits(max_connections=None, max_keepalive_connections=64),
        inner_backend: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        # The parent's __init__ only builds ``self._pool``; this replaces it.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify, trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedBackend(policy, inner_backend),
        )


def guarded_client(
    policy: NetworkPolicy,
    *,
    user_agent: str,
    timeout: httpx.Timeout,
    max_keepalive: int = 64,
    max_redirects: int = 5,
    headers: Mapping[str, str] | None = None,
) -> httpx.AsyncClient:
    """One ``httpx.AsyncClient`` whose every connection goes through the guard.

    It follows no redirects unless asked per request, and keeps no cookies
    (a jar over millions of hosts would only grow, and track us).
    """
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=max_keepalive)
    transport = GuardedTransport(policy, limits=limits)
    return httpx.AsyncClient(
        transport=transport,
        timeout=timeout,
        headers={"User-Agent": user_agent, **(headers or {})},
        follow_redirects=False,
        max_redirects=max_redirects,
        trust_env=False,
        cookies=httpx.Cookies(CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))),
    )

