"""The image downloader against a real misbehaving server on 127.0.0.1, and the SSRF guard on its own."""

from __future__ import annotations

import asyncio
import email.utils
import io
import logging
import shutil
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from PIL import Image

from danqing_assets.curation.images.download import DownloadConfig, download_all, fetch_images
from danqing_assets.curation.images.net_guard import (
    BlockedAddress,
    GuardedTransport,
    NetworkPolicy,
    ResolutionFailed,
    redact_url,
    system_resolver,
)
from danqing_assets.curation.images.robots import forbids_ai
from danqing_assets.curation.images.sniff import sniff_image_format
from danqing_assets.curation.images.urls import parse_retry_after, prepare_url, retry_delay
from danqing_assets.settings import Settings
from danqing_assets_tests.image_fault_server import ImageFaultServer, Route

ROBOTS = b"User-agent: *\nDisallow: /private/\n"
SAMPLE = ".danqing-sample.test"


def _image(fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 12), (200, 30, 60)).save(buffer, fmt)
    return buffer.getvalue()


JPEG, PNG = _image("JPEG"), _image("PNG")
HTML = b"<!doctype html><html><head><title>Not found</title></head><body>gone</body></html>"


@pytest.fixture
def server():
    with ImageFaultServer({"/robots.txt": Route(ROBOTS), "/a.jpg": Route(JPEG), "/a.png": Route(PNG)}) as srv:
        yield srv


def config(server: ImageFaultServer, **overrides) -> DownloadConfig:
    policy = NetworkPolicy.from_strings(f"127.0.0.1:{server.port}", f"*{SAMPLE}=127.0.0.1:{server.port}")
    values = dict(policy=policy, connect_timeout_s=2, read_timeout_s=2, total_timeout_s=5, backoff_base_s=0.01,
                  backoff_cap_s=0.05, concurrency=8)  # fmt: skip
    return DownloadConfig(**{**values, **overrides})


def fetch_one(url: str, cfg: DownloadConfig):
    [result] = download_all([url], cfg)
    return result


# --- good answers ---------------------------------------------------------------------------
def test_good_images_are_sniffed_and_we_say_who_we_are(server):
    cfg = config(server)
    results = {r.url: r for r in download_all([f"{server.url}/a.jpg", f"{server.url}/a.png"], cfg)}
    jpeg, png = results[f"{server.url}/a.jpg"], results[f"{server.url}/a.png"]
    assert (jpeg.ok, jpeg.image_format, jpeg.data, jpeg.reason, jpeg.status) == (True, "jpeg", JPEG, None, 200)
    assert (png.ok, png.image_format, png.data, png.attempts, png.retryable) == (True, "png", PNG, 1, False)
    assert png.final_url == f"{server.url}/a.png"
    assert {seen.user_agent for seen in server.requests} == {cfg.user_agent}
    assert server.hits("/robots.txt") == 1


def test_content_type_is_ignored(server):
    server.routes["/png-as-html"] = Route(PNG, headers=[("Content-Type", "text/html")])
    server.routes["/html-as-jpeg"] = Route(HTML, headers=[("Content-Type", "image/jpeg")])
    server.routes["/empty"] = Route(b"", headers=[("Content-Type", "image/png")])
    cfg = config(server)
    assert (r := fetch_one(f"{server.url}/png-as-html", cfg)).ok and r.image_format == "png"
    assert (r := fetch_one(f"{server.url}/html-as-jpeg", cfg)).reason == "not_an_image" and not r.retryable
    assert r.data is None
    assert fetch_one(f"{server.url}/empty", cfg).reason == "empty_body"


def test_host_overrides_route_to_the_server_and_keep_the_host(server):
    result = fetch_one(f"http://img{SAMPLE}/a.jpg", config(server))
    assert result.ok and result.final_url == f"http://img{SAMPLE}/a.jpg"
    assert {seen.host for seen in server.requests} == {f"img{SAMPLE}"}
    no_allowlist = NetworkPolicy.from_strings("", f"*{SAMPLE}=127.0.0.1:{server.port}")
    assert fetch_one(f"http://img{SAMPLE}/a.jpg", config(server, policy=no_allowlist)).reason == "ssrf_blocked"


# --- retries ---------------------------------------------------------------------------------
def test_500_then_ok_is_retried(server):
    server.routes["/flaky.png"] = Route(PNG, fail_first=[500])
    result = fetch_one(f"{server.url}/flaky.png", config(server))
    assert result.ok and result.attempts == 2 and server.hits("/flaky.png") == 2


def test_429_retry_after_is_honoured_and_capped(server):
    server.routes["/busy.png"] = Route(PNG, fail_first=[429], retry_after="1")
    server.routes["/sleepy.png"] = Route(PNG, fail_first=[503], retry_after="3600")
    result = fetch_one(f"{server.url}/busy.png", config(server))
    waited = [s.at for s in server.requests if s.path == "/busy.png"]
    assert result.ok and result.attempts == 2
    assert 0.95 <= waited[1] - waited[0] < 2.5
    started = time.monotonic()
    assert fetch_one(f"{server.url}/sleepy.png", config(server, retry_after_cap_s=0.2)).ok
    assert time.monotonic() - started < 2


def test_always_503_gives_up_retryable(server):
    server.routes["/down.png"] = Route(status=503, body=b"down")
    result = fetch_one(f"{server.url}/down.png", config(server, retries=3))
    assert (result.ok, result.reason, result.status, result.retryable) == (False, "http_status:503", 503, True)
    assert result.attempts == 4 and server.hits("/down.png") == 4


def test_404_is_final(server):
    result = fetch_one(f"{server.url}/missing.png", config(server))
    assert (result.reason, result.status, result.retryable, result.attempts) == ("http_status:404", 404, False, 1)


# --- hostile bodies --------------------------------------------------------------------------
def test_slow_body_hits_the_deadline(server):
    server.routes["/slow.png"] = Route(PNG, trickle_s=0.1)
    started = time.monotonic()
    result = fetch_one(f"{server.url}/slow.png", config(server, total_timeout_s=0.5, retries=1))
    assert (result.ok, result.reason, result.retryable, result.attempts) == (False, "timeout", True, 2)
    assert time.monotonic() - started < 3


def test_truncated_body_is_never_ok(server):
    server.routes["/cut.png"] = Route(PNG[:60], declared_length=len(PNG) + 1000)
    result = fetch_one(f"{server.url}/cut.png", config(server, total_timeout_s=1, retries=1))
    assert not result.ok and result.reason in ("connection_error", "timeout") and result.retryable
    assert result.data is None


def test_endless_and_oversized_bodies_are_cut_off(server):
    server.routes["/endless.jpg"] = Route(endless=True)
    server.routes["/big.png"] = Route(PNG)
    started = time.monotonic()
    result = fetch_one(f"{server.url}/endless.jpg", config(server, max_bytes=256 * 1024))
    assert (result.reason, result.retryable, result.data) == ("too_large", False, None)
    assert time.monotonic() - started < 3
    assert fetch_one(f"{server.url}/big.png", config(server, max_bytes=len(PNG) - 1)).reason == "too_large"


# --- redirects and SSRF ------------------------------------------------------------------------
def test_redirects_are_followed_within_the_limit(server):
    for i in range(7):
        server.routes[f"/hop{i}"] = Route(status=302, location=f"/hop{i + 1}")
    server.routes["/hop7"] = Route(PNG)
    server.routes["/loop/a"] = Route(status=301, location="/loop/b")
    server.routes["/loop/b"] = Route(status=307, location=f"{server.url}/loop/a")
    cfg = config(server)
    assert (r := fetch_one(f"{server.url}/hop3", cfg)).ok and r.final_url == f"{server.url}/hop7"
    assert fetch_one(f"{server.url}/hop0", cfg).reason == "too_many_redirects"
    assert (r := fetch_one(f"{server.url}/loop/a", cfg)).reason == "too_many_redirects" and not r.retryable
    assert server.hits("/loop/a") == 1


def test_redirects_to_private_addresses_are_blocked_before_connecting(server, connects):
    with ImageFaultServer({"/": Route(PNG), "/robots.txt": Route(b"")}) as other:
        server.routes["/to-private"] = Route(status=302, location="http://10.0.0.1/x.jpg")
        server.routes["/to-other-port"] = Route(status=302, location=f"http://127.0.0.1:{other.port}/")
        server.routes["/to-ftp"] = Route(status=302, location="ftp://example.com/x.jpg")
        urls = [f"{server.url}/to-private", f"{server.url}/to-other-port", f"{server.url}/to-ftp"]
        results = {r.url: r for r in download_all(urls, config(server))}
        assert other.requests == []
    assert [results[u].reason for u in urls] == ["ssrf_blocked", "ssrf_blocked", "unsupported_scheme"]
    assert results[urls[0]].final_url == "http://10.0.0.1/x.jpg" and not results[urls[0]].retryable
    assert {port for _, port in connects} == {server.port}


@pytest.mark.parametrize(
    "url",
    ["http://2130706433/", "http://0177.0.0.1/", "http://0x7f.1/", "http://[::1]:1/", "http://[::ffff:127.0.0.1]/",
     "http://169.254.169.254/latest/meta-data/", "http://100.64.0.1/", "http://0.0.0.0:80/"],  # fmt: skip
)
def test_private_literals_are_blocked(url, connects):
    result = fetch_one(url, DownloadConfig(total_timeout_s=2, retries=0))
    assert (result.reason, result.retryable, result.attempts) == ("ssrf_blocked", False, 1)
    assert connects == []


def test_getaddrinfo_normalises_numeric_hosts():
    for host in ("2130706433", "0177.0.0.1", "0x7f.1", "127.1"):
        assert system_resolver(host, 80) == ["127.0.0.1"]


class FakeResolver:
    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers, self.asked = answers, []

    def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        if host not in self.answers:
            raise OSError(f"no such host {host}")
        return self.answers[host]


@pytest.mark.parametrize(
    "addresses",
    [["10.1.2.3"], ["::1"], ["::ffff:127.0.0.1"], ["169.254.169.254"], ["224.0.0.1"], ["100.64.1.1"], ["fd00::1"],
     ["fec0::1"], ["fe80::1%eth0"], ["0.0.0.0"], ["2002:7f00:1::1"], ["64:ff9b::a01:203"], ["240.0.0.1"],
     ["93.184.216.34", "10.0.0.1"], ["not-an-ip"]],  # fmt: skip
)
def test_policy_blocks_private_resolutions(addresses):
    policy = NetworkPolicy(resolver=FakeResolver({"evil.example": addresses}))
    with pytest.raises(BlockedAddress):
        asyncio.run(policy.vet("evil.example", 80))


def test_policy_admits_public_and_allowlisted_addresses():
    resolver = FakeResolver({"good.example": ["93.184.216.34", "2606:2800:220:1::1"], "lan.example": ["10.9.8.7"]})
    policy = NetworkPolicy(allowlist=("10.0.0.0/8", "127.0.0.1:8080", "[::1]:9000"), resolver=resolver)
    assert asyncio.run(policy.vet("good.example", 443)) == [("93.184.216.34", 443), ("2606:2800:220:1::1", 443)]
    assert asyncio.run(policy.vet("lan.example", 1234)) == [("10.9.8.7", 1234)]
    assert asyncio.run(policy.vet("127.0.0.1", 8080)) == [("127.0.0.1", 8080)]
    assert asyncio.run(policy.vet("::1", 9000)) == [("::1", 9000)]
    for host, port in (("127.0.0.1", 8081), ("::1", 9001), ("169.254.169.254", 80)):
        with pytest.raises(BlockedAddress):
            asyncio.run(policy.vet(host, port))
    with pytest.raises(ResolutionFailed):
        asyncio.run(policy.vet("nowhere.example", 80))
    assert resolver.asked == ["good.example", "lan.example", "nowhere.example"]  # literals are not looked up


def test_policy_from_settings_strings():
    overrides = f"img.test=127.0.0.1:81,*{SAMPLE}=[::1]:9000,h=10.0.0.1"
    policy = NetworkPolicy.from_strings(" 127.0.0.1:81, 10.0.0.0/8 ", overrides)
    assert policy.override_for("IMG.test.") == ("127.0.0.1", 81)
    assert policy.override_for(f"a.b{SAMPLE}") == ("::1", 9000) and policy.override_for("x.test") is None
    assert asyncio.run(policy.vet("h", 8443)) == [("10.0.0.1", 8443)]
    with pytest.raises(BlockedAddress):  # an override target is vetted like any address
        asyncio.run(policy.vet(f"a{SAMPLE}", 80))
    with pytest.raises(ValueError):
        NetworkPolicy.from_strings("", "no-target")
    settings = Settings(network_allowlist="127.0.0.1:81", host_overrides="img.test=127.0.0.1:81", download_retries=1)
    cfg = DownloadConfig.from_settings(settings)
    assert cfg.retries == 1 and cfg.policy.allowlist == ("127.0.0.1:81",)
    assert cfg.user_agent == settings.download_user_agent and cfg.total_timeout_s == settings.download_timeout_s


def test_evil_hostname_is_blocked_end_to_end(connects):
    resolver = FakeResolver({"evil.example": ["169.254.169.254"], "flaky.example": []})
    cfg = DownloadConfig(policy=NetworkPolicy(resolver=resolver), retries=0, total_timeout_s=2)
    results = {r.url: r for r in download_all(["http://evil.example/a.jpg", "http://gone.example/a.jpg"], cfg)}
    assert results["http://evil.example/a.jpg"].reason == "ssrf_blocked"
    assert results["http://gone.example/a.jpg"].reason == "dns_error"
    assert connects == []


def test_credentials_never_reach_logs_reasons_or_servers(server, caplog):
    caplog.set_level(logging.DEBUG)
    server.routes["/to-private"] = Route(status=302, location="http://user:s3cret@10.0.0.1/x.jpg")
    base = server.url.replace("http://", "http://user:s3cret@")
    urls = [f"{base}/a.png", f"{base}/private/a.png", f"{base}/missing", f"{base}/to-private",
            "http://user:s3cret@169.254.169.254/", "ftp://user:s3cret@example.com/x"]  # fmt: skip
    results = download_all(urls, config(server))
    assert sorted(r.reason or "ok" for r in results) == sorted(
        ["ok", "robots_disallowed", "http_status:404", "ssrf_blocked", "ssrf_blocked", "unsupported_scheme"]
    )
    assert "s3cret" not in caplog.text
    assert not any("s3cret" in f"{r.reason} {r.final_url}" for r in results)
    assert all(seen.authorization is None for seen in server.requests)
    assert redact_url("https://u:p@w@h.example:8/x?y=1") == "https://h.example:8/x?y=1"


def test_tls_sni_and_certificate_use_the_hostname_not_the_vetted_ip(tmp_path: Path):
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    host = f"img{SAMPLE}"
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", key, "-out", cert, "-days", "1", "-subj", f"/CN={host}", "-addext",
                    f"subjectAltName=DNS:{host}"], check=True, capture_output=True)  # fmt: skip
    names: list[str | None] = []
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    server_ctx.sni_callback = lambda sock, name, ctx: names.append(name)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            body = self.headers["Host"].encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.socket = server_ctx.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    port = httpd.server_address[1]
    policy = NetworkPolicy.from_strings(f"127.0.0.1:{port}", f"{host}=127.0.0.1:{port}")

    async def get() -> httpx.Response:
        verify = ssl.create_default_context(cafile=str(cert))
        async with httpx.AsyncClient(transport=GuardedTransport(policy, verify=verify)) as client:
            return await client.get(f"https://{host}/")

    try:
        response = asyncio.run(get())
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert response.text == host and names == [host]


# --- robots.txt and X-Robots-Tag -----------------------------------------------------------
def test_x_robots_tag_noai_is_obeyed(server):
    server.routes["/noai.png"] = Route(PNG, headers=[("X-Robots-Tag", "noai")])
    server.routes["/ua-noai.png"] = Route(PNG, headers=[("X-Robots-Tag", "danqing: NoImageAI")])
    two = [("X-Robots-Tag", "googlebot: noindex"), ("X-Robots-Tag", "x: noai")]
    server.routes["/two.png"] = Route(PNG, headers=two)
    server.routes["/noindex.png"] = Route(PNG, headers=[("X-Robots-Tag", "noindex, nofollow")])
    paths = ["/noai.png", "/ua-noai.png", "/two.png", "/noindex.png"]
    results = {r.url: r for r in download_all([server.url + p for p in paths], config(server))}
    assert [results[server.url + p].reason for p in paths] == ["x_robots_noai"] * 3 + [None]
    assert all(results[server.url + p].data is None for p in paths[:3])
    assert not forbids_ai(["noindex", "noarchive"]) and forbids_ai(["max-snippet:10, NOAI"])
    assert fetch_one(f"{server.url}/noai.png", config(server, respect_x_robots=False)).ok


def test_robots_txt_is_fetched_once_per_host_and_obeyed(server):
    server.routes["/robots.txt"] = Route(ROBOTS, delay_s=0.3)  # requests pile up while it is on the way
    hosts = [server.url, f"http://a{SAMPLE}", f"http://b{SAMPLE}"]
    urls = [f"{h}/a.png?{i}" for h in hosts for i in range(20)] + [f"{h}/private/x.png" for h in hosts]
    results = download_all(urls, config(server, concurrency=64))
    reasons = sorted(r.reason or "ok" for r in results)
    assert reasons == ["ok"] * 60 + ["robots_disallowed"] * 3
    assert all(not r.retryable for r in results)
    robots = [seen.host for seen in server.requests if seen.path == "/robots.txt"]
    assert sorted(robots) == sorted([f"127.0.0.1:{server.port}", f"a{SAMPLE}", f"b{SAMPLE}"])
    assert server.hits("/private/x.png") == 0


def test_robots_txt_failures_follow_rfc_9309(server):
    server.routes["/robots.txt"] = Route(status=503, body=b"down")
    cfg = config(server, respect_robots=True)
    result = fetch_one(f"{server.url}/a.png", cfg)
    assert (result.reason, result.retryable) == ("robots_disallowed", True)  # 5xx: disallow all, for now
    assert server.hits("/a.png") == 0
    server.routes["/robots.txt"] = Route(status=404, body=b"none")
    assert fetch_one(f"{server.url}/private/a.png", cfg).reason == "http_status:404"  # 4xx: allow all
    server.routes["/robots.txt"] = Route(status=500)
    assert fetch_one(f"{server.url}/a.png", config(server, respect_robots=False)).ok


# --- politeness and memory -------------------------------------------------------------------
def test_per_host_and_global_limits_hold(server):
    server.routes["/slow.png"] = Route(PNG, delay_s=0.1)
    hosts = [server.url, f"http://a{SAMPLE}", f"http://b{SAMPLE}"]
    urls = [f"{h}/slow.png?{i}" for h in hosts for i in range(8)]
    results = download_all(urls, config(server, per_host_concurrency=2, concurrency=5))
    assert all(r.ok for r in results)
    assert max(server.max_in_flight.values()) == 2
    assert server.max_total_in_flight <= 5


def test_the_deadline_does_not_count_time_queued_for_a_host(server):
    server.routes["/slow.png"] = Route(PNG, delay_s=0.25)
    urls = [f"{server.url}/slow.png?{i}" for i in range(4)]
    results = download_all(urls, config(server, per_host_concurrency=1, total_timeout_s=0.6, retries=0))
    assert all(r.ok for r in results)


def test_urls_are_taken_lazily(server):
    server.routes["/slow.png"] = Route(PNG, delay_s=0.05)
    pulled = 0

    def urls():
        nonlocal pulled
        for i in range(1_000_000):
            pulled += 1
            yield f"{server.url}/slow.png?{i}"

    async def first_then_stop():
        results = fetch_images(urls(), config(server, concurrency=2))
        first = await anext(results)
        await results.aclose()
        return first

    assert asyncio.run(first_then_stop()).ok
    assert pulled <= 4 * 2 + 1


def test_bad_urls_fail_without_a_request(server):
    urls = ["ftp://example.com/x.jpg", "data:image/png;base64,AAAA", "not a url", "", "http://", "/relative.jpg",
            "http://exa mple.com/x.jpg", "http://[::1/x"]  # fmt: skip
    results = {r.url: r for r in download_all(urls, config(server))}
    assert [results[u].reason for u in urls] == ["unsupported_scheme"] * 2 + ["invalid_url"] * 6
    assert all(r.attempts == 0 and not r.retryable for r in results.values())
    assert server.requests == []


# --- helpers ---------------------------------------------------------------------------------------
def test_sniff_image_format():
    ftyp = lambda major, *compat: (  # noqa: E731
        (16 + 4 * len(compat)).to_bytes(4, "big") + b"ftyp" + major + b"\0\0\0\0" + b"".join(compat)
    )
    assert sniff_image_format(JPEG) == "jpeg" and sniff_image_format(PNG) == "png"
    for fmt, name in (("GIF", "gif"), ("WEBP", "webp"), ("BMP", "bmp"), ("TIFF", "tiff"), ("ICO", "ico")):
        assert sniff_image_format(_image(fmt)[:32]) == name
    assert sniff_image_format(ftyp(b"avif", b"mif1", b"miaf")) == "avif"
    assert sniff_image_format(ftyp(b"mif1", b"heic")) == "heif"
    assert sniff_image_format(ftyp(b"isom", b"mp41")) is None  # an MP4 video
    assert sniff_image_format(b"BMW sells cars, not bitmaps") is None
    assert sniff_image_format(HTML) is None and sniff_image_format(b"") is None
    assert sniff_image_format(b'<svg xmlns="http://www.w3.org/2000/svg"/>') is None


def test_retry_after_and_backoff():
    assert parse_retry_after("7") == 7.0 and parse_retry_after("soon") is None and parse_retry_after(None) is None
    in_a_minute = email.utils.formatdate(time.time() + 60, usegmt=True)
    assert 55 < parse_retry_after(in_a_minute) <= 60
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert retry_delay(1, "3600", 0.5, 30, 60) == 60
    assert retry_delay(1, in_a_minute, 0.5, 30, 10) == 10
    assert all(0.5 * 0.5 <= retry_delay(1, None, 0.5, 30, 60) <= 0.5 for _ in range(20))
    assert retry_delay(20, None, 0.5, 30, 60) <= 30


def test_prepare_url_normalises_like_a_browser():
    assert str(prepare_url("HTTP://User:Pw@Example.COM/a b.jpg#frag")) == "http://example.com/a%20b.jpg"
    assert str(prepare_url("http://0x7f.1:8080/x")) == "http://127.0.0.1:8080/x"
    assert str(prepare_url("https://例子.测试/图.jpg")).startswith("https://xn--fsqu00a.xn--0zwm56d/")
