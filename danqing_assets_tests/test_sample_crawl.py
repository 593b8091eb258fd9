"""The bundled sample crawl: a faithful, deterministic CC mirror and its HTTP server."""

from __future__ import annotations

import gzip
import hashlib
import http.client
import io
import itertools
import json
import re
import socket
import zlib
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import imagehash
import pytest
from PIL import Image
from warcio.archiveiterator import ArchiveIterator

from danqing_assets.sample_crawl import SampleCrawlServer, SampleMirror, build_sample_mirror
from danqing_assets.sample_crawl.images import IMAGE_KINDS
from danqing_assets.sample_crawl.pages import CLD2_LANGUAGES, PAGE_KINDS
from danqing_assets.sample_crawl.plan import OTHER_CAPTURE_KINDS, TEXT_KINDS
from danqing_assets.sample_crawl.warc import sha1_digest

SNAPSHOT_IDS = ("CC-MAIN-2026-08", "CC-MAIN-2026-17")
SUFFIX = ".danqing-sample.test"
WARC_PATH = re.compile(
    r"^crawl-data/(CC-MAIN-\d{4}-\d{2})/segments/\d{13}\.\d{2}/warc/CC-MAIN-\d{14}-\d{14}-\d{5}\.warc\.gz$"
)
NOT_TAG_KINDS = {"srcset_variant", "placeholder"}  # image files that no <img> points at as its main URL


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> SampleMirror:
    return build_sample_mirror(tmp_path_factory.mktemp("mirror"), host_suffix=SUFFIX)


@pytest.fixture(scope="module")
def manifest(mirror: SampleMirror) -> dict:
    return json.loads(mirror.manifest_path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def warcs(mirror: SampleMirror) -> dict[str, list]:
    """Every WARC's records as (type, warc headers, http headers, body), in file order."""
    out = {}
    for path in itertools.chain.from_iterable(mirror.warc_paths.values()):
        with (mirror.root / path).open("rb") as stream:
            out[path] = [
                (rec.rec_type, rec.rec_headers, rec.http_headers, rec.content_stream().read())
                for rec in ArchiveIterator(stream)
            ]
    return out


@pytest.fixture(scope="module")
def server(mirror: SampleMirror):
    with SampleCrawlServer(mirror.root, host_suffix=SUFFIX) as srv:
        yield srv


def _html_pages(manifest: dict) -> list[dict]:
    return [c for c in manifest["captures"] if "images" in c]


def _tags(manifest: dict, snapshot: str | None = None) -> list[dict]:
    return [t for p in _html_pages(manifest) if snapshot in (None, p["snapshot"]) for t in p["images"]]


# --- the mirror ------------------------------------------------------------------


def test_same_seed_gives_identical_bytes(mirror: SampleMirror, tmp_path: Path) -> None:
    again = build_sample_mirror(tmp_path / "again", host_suffix=SUFFIX)

    def digests(root: Path) -> dict[str, str]:
        return {
            str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
        }

    assert digests(mirror.root) == digests(again.root)


def test_mirror_stays_small(mirror: SampleMirror) -> None:
    # photos carry film-like grain so they pass the paper's blur filter; grain costs bytes
    assert mirror.total_bytes < 45_000_000
    for snapshot in SNAPSHOT_IDS:
        assert 300 <= mirror.img_tags[snapshot] <= 450


def test_collinfo_lists_the_two_sample_crawls_newest_first(mirror: SampleMirror) -> None:
    crawls = json.loads((mirror.root / "collinfo.json").read_text())
    assert [c["id"] for c in crawls] == ["CC-MAIN-2026-17", "CC-MAIN-2026-08"]
    for crawl in crawls:
        assert set(crawl) == {"id", "name", "timegate", "cdx-api", "from", "to"}
        assert crawl["from"] < crawl["to"]
    assert mirror.snapshots == SNAPSHOT_IDS


def test_warc_paths_gz_lists_existing_files(mirror: SampleMirror) -> None:
    for snapshot in SNAPSHOT_IDS:
        listed = gzip.decompress((mirror.root / "crawl-data" / snapshot / "warc.paths.gz").read_bytes()).decode()
        lines = listed.splitlines()
        assert lines == mirror.warc_paths[snapshot] and len(lines) == 3
        for line in lines:
            assert WARC_PATH.match(line).group(1) == snapshot  # type: ignore[union-attr]
            assert (mirror.root / line).is_file()


def test_each_record_is_its_own_gzip_member(mirror: SampleMirror, warcs: dict[str, list]) -> None:
    for path, records in warcs.items():
        data, members = (mirror.root / path).read_bytes(), 0
        while data:
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            inflater.decompress(data)
            data, members = inflater.unused_data, members + 1
        assert members == len(records)


def test_warc_record_layout_follows_common_crawl(warcs: dict[str, list]) -> None:
    for records in warcs.values():
        assert records[0][0] == "warcinfo"
        info_id = records[0][1].get_header("WARC-Record-ID")
        triples = records[1:]
        assert len(triples) % 3 == 0
        for request, response, metadata in zip(triples[::3], triples[1::3], triples[2::3], strict=True):
            assert (request[0], response[0], metadata[0]) == ("request", "response", "metadata")
            uri = request[1].get_header("WARC-Target-URI")
            assert uri == response[1].get_header("WARC-Target-URI") == metadata[1].get_header("WARC-Target-URI")
            assert response[1].get_header("WARC-Concurrent-To") == request[1].get_header("WARC-Record-ID")
            assert metadata[1].get_header("WARC-Concurrent-To") == response[1].get_header("WARC-Record-ID")
            assert {r[1].get_header("WARC-Warcinfo-ID") for r in (request, response, metadata)} == {info_id}
            assert response[1].get_header("WARC-Payload-Digest") == sha1_digest(response[3])
            assert response[1].get_header("WARC-IP-Address") and response[1].get_header("WARC-Identified-Payload-Type")
            assert int(response[2].get_header("Content-Length")) == len(response[3])
            _check_metadata(metadata[3], response)


def _check_metadata(body: bytes, response: tuple) -> None:
    assert body.endswith(b"\r\n\r\n")
    fields = dict(line.split(": ", 1) for line in body.decode().strip().split("\r\n"))
    assert int(fields["fetchTimeMs"]) > 0
    is_page = response[2].get_statuscode() == "200" and response[2].get_header("Content-Type").startswith("text/html")
    assert ("languages-cld2" in fields) == is_page
    if is_page:
        report = json.loads(fields["languages-cld2"])
        assert list(report) == ["reliable", "text-bytes", "languages"]
        main = report["languages"][0]
        assert list(main) == ["code", "code-iso-639-3", "text-covered", "score", "name"]
        assert (main["code-iso-639-3"], main["name"]) == CLD2_LANGUAGES[main["code"]]


def test_manifest_describes_the_warc_captures(manifest: dict, warcs: dict[str, list]) -> None:
    responses = [r for path in warcs for r in warcs[path] if r[0] == "response"]
    assert [c["url"] for c in manifest["captures"]] == [r[1].get_header("WARC-Target-URI") for r in responses]
    for capture, (_, _, http_headers, body) in zip(manifest["captures"], responses, strict=True):
        assert capture["status"] == int(http_headers.get_statuscode())
        if "images" in capture:
            _check_page_charset(capture, http_headers.get_header("Content-Type"), body)


def _check_page_charset(page: dict, content_type: str, body: bytes) -> None:
    """The bytes decode with the real encoding, and the charset is declared exactly where claimed."""
    text = body.decode(page["encoding"])
    declared, where = page["declared_charset"], page["charset_location"]
    assert ("charset=" in content_type) == ("header" in where)
    assert (f'<meta charset="{declared}">' in text) == ("meta_charset" in where)
    assert ('http-equiv="Content-Type"' in text) == ("meta_http_equiv" in where)
    if not where:
        assert "charset" not in text and declared is None


def test_every_page_kind_and_odd_capture_in_every_snapshot(manifest: dict) -> None:
    for snapshot in SNAPSHOT_IDS:
        captures = [c for c in manifest["captures"] if c["snapshot"] == snapshot]
        kinds = Counter(c["kind"] for c in captures)
        assert set(PAGE_KINDS) | set(OTHER_CAPTURE_KINDS) <= set(kinds)
        assert kinds["not_found_404"] == 1
        pages = [c for c in captures if "images" in c]
        assert sum(p["language"] == "zh" for p in pages) > len(pages) / 2  # mostly Simplified Chinese


def test_encoding_traps_are_real(manifest: dict, warcs: dict[str, list]) -> None:
    bodies = {r[1].get_header("WARC-Target-URI"): r[3] for recs in warcs.values() for r in recs if r[0] == "response"}
    by_kind = {c["kind"]: bodies[c["url"]] for c in manifest["captures"]}
    with pytest.raises(UnicodeDecodeError):
        by_kind["hans_gb2312_needs_gb18030"].decode("gb2312")
    assert "𠀀" in by_kind["hans_gb2312_needs_gb18030"].decode("gb18030")
    traditional = by_kind["hant_big5"].decode("big5")
    assert [ch for ch in traditional if _not_gb2312(ch)]  # characters only Traditional Chinese uses
    for kind in ("ja_shift_jis", "ja_euc_jp"):
        assert re.search("[\u3040-\u309f]", by_kind[kind].decode(PAGE_KINDS[kind].encoding))  # hiragana
    with pytest.raises(UnicodeDecodeError):
        by_kind["hans_meta_charset_gbk"].decode("utf-8")


def _not_gb2312(ch: str) -> bool:
    try:
        ch.encode("gb2312")
    except UnicodeEncodeError:
        return True
    return False


class _ImgCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.base: str | None = None
        self.imgs: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "base":
            self.base = dict(attrs)["href"]
        elif tag == "img":
            self.imgs.append(dict(attrs))


def _resolve(attrs: dict[str, str | None], base: str) -> str:
    src = attrs.get("data-src") or attrs.get("data-original") or attrs.get("src")
    if src is None:  # srcset only: the widest candidate
        candidates = [c.split() for c in (attrs["srcset"] or "").split(",")]
        src = max(candidates, key=lambda c: int(c[1].rstrip("w")))[0]
    return src if src.startswith("data:") else urljoin(base, src)


def test_markup_resolves_to_the_manifest_urls(manifest: dict, warcs: dict[str, list]) -> None:
    bodies = {r[1].get_header("WARC-Target-URI"): r[3] for recs in warcs.values() for r in recs if r[0] == "response"}
    forms, markups = Counter(), Counter()
    for page in _html_pages(manifest):
        parser = _ImgCollector()
        parser.feed(bodies[page["url"]].decode(page["encoding"]))
        base = urljoin(page["url"], parser.base) if parser.base else page["url"]
        found = sorted((_resolve(a, base), a.get("alt")) for a in parser.imgs)
        assert found == sorted((t["url"], t["alt"]) for t in page["images"])
        forms.update(t["url_form"] for t in page["images"])
        markups.update(t["markup"] for t in page["images"])
    assert set(forms) == {"absolute", "protocol_relative", "root_relative", "relative", "parent_relative", "data_uri"}
    assert set(markups) == {"src", "data-src", "data-original", "srcset", "figure"}
    assert any(p["base_href"] for p in _html_pages(manifest))


def test_every_kind_of_noise_appears_in_each_snapshot(manifest: dict) -> None:
    for snapshot in SNAPSHOT_IDS:
        tags = _tags(manifest, snapshot)
        assert {t["text_kind"] for t in tags} == set(TEXT_KINDS)
        assert {t["image_kind"] for t in tags} == set(IMAGE_KINDS) - NOT_TAG_KINDS
        assert {t["caption_source"] for t in tags} >= {"alt", "title", "figcaption"}
        assert sum(t["kind"] == "good" for t in tags) > len(tags) / 3


def test_caption_ground_truth(manifest: dict) -> None:
    tags = _tags(manifest)
    for tag in tags:
        if tag["kind"] == "good":
            assert 5 <= tag["caption_words"] <= 60 and re.search("[\u4e00-\u9fff]", tag["caption"])
            assert tag["caption"] in (tag[tag["caption_source"]] or "")
        if tag["text_kind"] == "keyword_stuffing":
            assert len(tag["alt"].split()) * 2 > 60
        if tag["text_kind"] == "emoji_noise":
            assert tag["caption"] in tag["alt"] and tag["alt"] != tag["caption"]
    boilerplate = {t["alt"] for t in tags if t["text_kind"] == "boilerplate"}
    assert {"二维码", "看不清？换一换"} <= boilerplate


def test_repeats_within_and_across_snapshots(manifest: dict) -> None:
    pages_per_pair = Counter((t["url"], t["caption"]) for t in _tags(manifest) if t["kind"] == "good")
    assert max(pages_per_pair.values()) >= 3
    urls = {s: {t["url"] for t in _tags(manifest, s)} for s in SNAPSHOT_IDS}
    shared = urls[SNAPSHOT_IDS[0]] & urls[SNAPSHOT_IDS[1]]
    assert any(manifest["images"][u]["kind"] == "good" for u in shared if u in manifest["images"])


def test_image_files_match_the_manifest(mirror: SampleMirror, manifest: dict) -> None:
    for url, entry in manifest["images"].items():
        path = entry["path"]
        if entry["kind"] == "missing_404":
            assert path is None and not (mirror.root / "www" / urlsplit(url).hostname / urlsplit(url).path[1:]).exists()
            continue
        data = (mirror.root / path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
        if entry["kind"] in ("broken_truncated", "broken_random", "not_an_image"):
            with pytest.raises(OSError):
                Image.open(io.BytesIO(data)).load()
            continue
        image = Image.open(io.BytesIO(data))
        assert image.size == (entry["width"], entry["height"])
        if entry["kind"] == "cmyk":
            assert image.mode == "CMYK"
        if entry["kind"] == "palette_alpha":
            assert image.mode == "P" and "transparency" in image.info


def test_robots_txt_disallows_the_private_images(mirror: SampleMirror, manifest: dict) -> None:
    private = [u for u, e in manifest["images"].items() if e["kind"] == "robots_disallowed"]
    assert private
    for url in private:
        host, path = urlsplit(url).hostname, urlsplit(url).path
        robots = (mirror.root / "www" / host / "robots.txt").read_text()
        assert "Disallow: /private/" in robots and path.startswith("/private/")
    for host in mirror.hosts:
        assert (mirror.root / "www" / host / "robots.txt").is_file() and host.endswith(SUFFIX)


def test_near_duplicates_are_close_and_distinct_images_are_not(mirror: SampleMirror, manifest: dict) -> None:
    def phash(url: str) -> imagehash.ImageHash:
        return imagehash.phash(Image.open(mirror.root / manifest["images"][url]["path"]).convert("RGB"))

    pairs = [
        (u, e["duplicate_of"])
        for u, e in manifest["images"].items()
        if e["kind"] in ("near_duplicate", "exact_duplicate")
    ]
    assert len(pairs) >= 8
    for copy, original in pairs:
        assert phash(copy) - phash(original) <= 6
    goods = [u for u, e in manifest["images"].items() if e["kind"] == "good" and e["format"] == "jpeg"][:40]
    hashes = [phash(u) for u in goods]
    assert min(a - b for a, b in itertools.combinations(hashes, 2)) > 6


# --- the server ------------------------------------------------------------------


def _get(server: SampleCrawlServer, path: str, *, method: str = "GET", headers: dict[str, str] | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def test_server_serves_root_files(server: SampleCrawlServer, mirror: SampleMirror) -> None:
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", server.base_url)
    status, headers, body = _get(server, "/collinfo.json")
    assert status == 200 and body == (mirror.root / "collinfo.json").read_bytes()
    assert headers["Content-Type"] == "application/json" and headers["Accept-Ranges"] == "bytes"
    warc = mirror.warc_paths[SNAPSHOT_IDS[0]][0]
    status, headers, body = _get(server, "/" + warc)
    assert status == 200 and body == (mirror.root / warc).read_bytes()
    assert headers["Content-Type"] == "application/octet-stream" and "Content-Encoding" not in headers


def test_server_routes_sample_hosts_to_www(server: SampleCrawlServer, mirror: SampleMirror, manifest: dict) -> None:
    url, entry = next((u, e) for u, e in manifest["images"].items() if e["kind"] == "good" and e["format"] == "jpeg")
    parts = urlsplit(url)
    expected = (mirror.root / entry["path"]).read_bytes()
    status, headers, body = _get(server, parts.path, headers={"Host": f"{parts.hostname}:80"})
    assert (status, headers["Content-Type"], body) == (200, "image/jpeg", expected)
    status, _, body = _get(server, url)  # used as an HTTP proxy: absolute URL in the request line
    assert (status, body) == (200, expected)
    missing = next(u for u, e in manifest["images"].items() if e["kind"] == "missing_404")
    assert _get(server, missing)[0] == 404


def test_server_ranges_and_head(server: SampleCrawlServer, mirror: SampleMirror) -> None:
    data = (mirror.root / "collinfo.json").read_bytes()
    size = len(data)
    status, headers, body = _get(server, "/collinfo.json", headers={"Range": "bytes=10-19"})
    assert (status, body, headers["Content-Range"]) == (206, data[10:20], f"bytes 10-19/{size}")
    assert _get(server, "/collinfo.json", headers={"Range": "bytes=100-"})[2] == data[100:]
    assert _get(server, "/collinfo.json", headers={"Range": "bytes=-7"})[2] == data[-7:]
    status, headers, body = _get(server, "/collinfo.json", headers={"Range": f"bytes={size}-"})
    assert (status, headers["Content-Range"], body) == (416, f"bytes */{size}", b"")
    status, headers, body = _get(server, "/collinfo.json", method="HEAD")
    assert (status, int(headers["Content-Length"]), body) == (200, size, b"")


def test_server_answers_404_for_missing_files_and_directories(server: SampleCrawlServer) -> None:
    assert _get(server, "/no-such-file.json")[0] == 404
    assert _get(server, "/crawl-data/")[0] == 404
    assert _get(server, "/", headers={"Host": "img" + SUFFIX})[0] == 404


@pytest.mark.parametrize(
    ("path", "host"),
    [
        ("/../../../../etc/passwd", None),
        ("/%2e%2e/%2e%2e/%2e%2e/etc/passwd", None),
        ("/../../collinfo.json", "img" + SUFFIX),  # a sample host cannot read the crawl root
        ("/..%2f..%2fSAMPLE-MANIFEST.json", "cdn" + SUFFIX),
    ],
)
def test_server_refuses_path_traversal(server: SampleCrawlServer, path: str, host: str | None) -> None:
    status, _, body = _get(server, path, headers={"Host": host} if host else None)
    assert status == 403 and b"root:" not in body and b"CC-MAIN" not in body


def test_server_stop_closes_the_port_and_thread(mirror: SampleMirror) -> None:
    srv = SampleCrawlServer(mirror.root, host_suffix=SUFFIX).start()
    port, thread = srv.port, srv._thread
    idle = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    idle.request("GET", "/collinfo.json")
    idle.getresponse().read()  # leaves a keep-alive connection open across stop()
    srv.stop()
    srv.stop()  # idempotent
    assert thread is not None and not thread.is_alive()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    idle.close()
    with pytest.raises(RuntimeError):
        _ = srv.port
