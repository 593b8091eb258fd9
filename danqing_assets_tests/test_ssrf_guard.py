"""SSRF guard gaps beyond test_download.py: real DNS names and redirect chains into every loopback spelling.

A real image server listens on 127.0.0.1; the guard admits only the port the test
allows. Every other way of reaching it — a DNS name that resolves to loopback, a
redirect to a decimal/octal/hex/IPv6/IPv4-mapped spelling of it — must be blocked
before a socket is opened, and the server must see no request.
"""

import asyncio

import pytest

from danqing_assets.curation.images.download import DownloadConfig, download_all
from danqing_assets.curation.images.net_guard import BlockedAddress, NetworkPolicy
from danqing_assets_tests.image_fault_server import ImageFaultServer, Route
from danqing_assets_tests.test_download import PNG, config

LOOPBACK_SPELLINGS = ["localhost", "127.1", "2130706433", "0177.0.0.1", "0x7f.0.0.1", "127.0.0.1.", "[::1]",
                      "[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "[0:0:0:0:0:ffff:127.0.0.1]"]  # fmt: skip


@pytest.fixture
def target():
    """The server an attacker wants to reach: never allowlisted."""
    with ImageFaultServer({"/": Route(PNG), "/robots.txt": Route(b"")}) as srv:
        yield srv


@pytest.mark.parametrize("host", LOOPBACK_SPELLINGS)
def test_direct_requests_to_loopback_spellings_are_blocked_without_a_connection(host, target, connects):
    cfg = DownloadConfig(retries=0, total_timeout_s=5)
    [result] = download_all([f"http://{host}:{target.port}/x.png"], cfg)
    assert (result.reason, result.retryable) == ("ssrf_blocked", False)
    assert connects == [] and target.requests == []


def test_a_real_dns_name_resolving_to_loopback_is_blocked():
    policy = NetworkPolicy()  # the system resolver: /etc/hosts says localhost is 127.0.0.1 / ::1
    with pytest.raises(BlockedAddress, match="loopback"):
        asyncio.run(policy.vet("localhost", 80))
    with pytest.raises(BlockedAddress, match="loopback"):
        asyncio.run(policy.vet("LOCALHOST.", 80))


def test_redirect_chains_into_every_loopback_spelling_are_blocked(target, connects):
    with ImageFaultServer({"/robots.txt": Route(b"")}) as entry:  # the allowlisted, public-looking server
        urls = []
        for i, host in enumerate(LOOPBACK_SPELLINGS):
            entry.routes[f"/hop{i}"] = Route(status=302, location=f"{entry.url}/jump{i}")
            entry.routes[f"/jump{i}"] = Route(status=301, location=f"http://{host}:{target.port}/x.png")
            urls.append(f"{entry.url}/hop{i}")
        results = {r.url: r for r in download_all(urls, config(entry))}
    # httpx refuses to parse the octal spelling in a Location header, so no socket is opened; the
    # downloader labels that hop connection_error (invalid_url would be the better name)
    expected = ["connection_error" if host == "0177.0.0.1" else "ssrf_blocked" for host in LOOPBACK_SPELLINGS]
    assert [results[u].reason for u in urls] == expected
    assert target.requests == []
    assert {port for _, port in connects} == {entry.port}


def test_an_allowlisted_port_does_not_open_the_host(target):
    policy = NetworkPolicy.from_strings(f"127.0.0.1:{target.port}")
    assert asyncio.run(policy.vet("127.0.0.1", target.port)) == [("127.0.0.1", target.port)]
    for host, port in (("127.0.0.1", target.port + 1), ("::1", target.port), ("localhost", 22)):
        with pytest.raises(BlockedAddress):
            asyncio.run(policy.vet(host, port))
