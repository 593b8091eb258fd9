"""Which IP addresses are off limits, and the allowlist entries that make exceptions.

Kept apart from the guard's connection plumbing (:mod:`.net_guard`) so the
address rules can be read, and tested, on their own. Anything that is not a
public unicast address is refused: loopback, private, link-local, multicast,
reserved, unspecified, shared (100.64/10), IPv6 site-local and ULA, and IPv6
addresses embedding such an IPv4 address (mapped, 6to4, Teredo, NAT64).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT
_SITE_LOCAL = ipaddress.ip_network("fec0::/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_CATEGORIES = ("unspecified", "loopback", "link_local", "multicast", "private", "reserved")
_NUMERIC_V4 = re.compile(r"[0-9a-fx.]+", re.I)


def parse_ip_literal(host: str) -> IPAddress | None:
    """The address a host names by itself, including the forms ``inet_aton`` accepts (``2130706433``, ``0x7f.1``)."""
    host = host.strip("[]")
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        pass
    if _NUMERIC_V4.fullmatch(host) and any(c.isdigit() for c in host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def blocked_reason(ip: IPAddress) -> str | None:
    """Why an address must not be connected to, or None if it is a public unicast address."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_v4(ip)
        if inner is not None and ip.ipv4_mapped is not None:
            return blocked_reason(inner)
        if inner is not None and (why := blocked_reason(inner)):
            return f"embeds {inner} ({why})"
        if ip in _SITE_LOCAL:
            return "site-local"
        if ip in _NAT64_LOCAL:
            return "local-use NAT64"
    for category in _CATEGORIES:
        if getattr(ip, f"is_{category}"):
            return category.replace("_", "-")
    if ip in _SHARED:
        return "shared address space"
    if not ip.is_global:
        return "not globally routable"
    return None


@dataclass(frozen=True)
class AllowEntry:
    network: IPNetwork
    port: int | None

    @classmethod
    def parse(cls, text: str) -> AllowEntry:
        text, port = text.strip(), None
        if text.startswith("["):
            address, _, rest = text[1:].partition("]")
            if rest:
                port = int(rest.removeprefix(":"))
            text = address
        elif text.count(":") == 1:
            text, _, port_text = text.partition(":")
            port = int(port_text)
        return cls(ipaddress.ip_network(text, strict=False), port)

    def admits(self, ip: IPAddress, port: int) -> bool:
        if self.port is not None and self.port != port:
            return False
        mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
        return any(a.version == self.network.version and a in self.network for a in (ip, mapped) if a)


def parse_target(text: str) -> tuple[str, int | None]:
    """``1.2.3.4``, ``1.2.3.4:80``, ``[::1]:80`` or ``::1`` into (ip, port)."""
    text = text.strip()
    if text.startswith("["):
        address, _, rest = text[1:].partition("]")
        return str(ipaddress.ip_address(address)), int(rest[1:]) if rest else None
    if text.count(":") == 1:
        address, _, port = text.partition(":")
        return str(ipaddress.ip_address(address)), int(port)
    return str(ipaddress.ip_address(text)), None
