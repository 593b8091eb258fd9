"""Image URLs from crawled pages, made safe to request; and when to try a failed one again.

URLs are normalised the way browsers do before anything else sees them:
numeric IPv4 spellings (``2130706433``, ``0177.0.0.1``, ``0x7f.1``) become
dotted quads so the SSRF guard judges the address they really name, and
``user:password@`` is dropped (browsers refuse to send credentials with
sub-resources; we neither send nor log them).
"""

from __future__ import annotations

import email.utils
import random
import re
import time
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

from danqing_assets.curation.images.ip_rules import parse_ip_literal
from danqing_assets.curation.images.reasons import INVALID_URL, UNSUPPORTED_SCHEME

_SCHEMES = frozenset({"http", "https"})
_HOSTNAME = re.compile(r"[a-z0-9_.-]+")
_IPV6 = re.compile(r"[0-9a-f:.]+")


def prepare_url(raw: object) -> httpx.URL | str:
    """The URL to request, or the reason (``invalid_url``, ``unsupported_scheme``) it cannot be."""
    if not isinstance(raw, str) or not raw.strip():
        return INVALID_URL
    try:
        parts = urlsplit(raw.strip())
        scheme = parts.scheme.lower()
        if scheme and scheme not in _SCHEMES:
            return UNSUPPORTED_SCHEME
        host, port = parts.hostname, parts.port
        if not scheme or not host:
            return INVALID_URL
        netloc = _canonical_host(host) + (f":{port}" if port is not None else "")
        url = httpx.URL(urlunsplit((scheme, netloc, parts.path or "/", parts.query, "")))
    except (ValueError, UnicodeError, httpx.InvalidURL):
        return INVALID_URL
    host = url.raw_host.decode("ascii", errors="replace")  # IDNA-encoded: xn--...
    if not (_HOSTNAME.fullmatch(host) or (":" in host and _IPV6.fullmatch(host))):
        return INVALID_URL
    return url


def resolve_redirect(current: httpx.URL, location: str) -> httpx.URL | str:
    """The URL a ``Location`` header points to, prepared like any other."""
    try:
        return prepare_url(urljoin(str(current), location.strip()))
    except ValueError:
        return INVALID_URL


def _canonical_host(host: str) -> str:
    literal = parse_ip_literal(host)
    if literal is None:
        return host
    return f"[{literal}]" if literal.version == 6 else str(literal)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP-date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def retry_delay(attempt: int, retry_after: str | None, base_s: float, cap_s: float, retry_after_cap_s: float) -> float:
    """Wait before retry number ``attempt`` (1-based): the server's ``Retry-After`` if any, else jittered backoff."""
    asked = parse_retry_after(retry_after)
    if asked is not None:
        return min(asked, retry_after_cap_s)
    return min(cap_s, base_s * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
