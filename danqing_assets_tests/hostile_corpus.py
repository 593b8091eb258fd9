"""Generated hostile inputs: WARC files and pages that the web really sends, built in memory.

Each :class:`HostileWarc` is one WARC file (one gzip member per record, as Common
Crawl writes them) with the outcome the extraction must reach: which pages are
skipped and why, which images are dropped and why, how many pairs survive.
Records are written byte by byte, so headers can carry what a well-behaved WARC
library would refuse to write (invalid UTF-8 in ``WARC-Target-URI``).
"""

import functools
import gzip
import uuid
import zlib
from dataclasses import dataclass, field

PAGE = b"https://hostile.example.cn/page.html"
HTML_UTF8 = (("Content-Type", "text/html; charset=utf-8"),)
CAPTION = "一只橘猫趴在窗台上晒太阳"
CAPTION_HTML = CAPTION.encode()


@dataclass(frozen=True)
class HostileWarc:
    name: str
    data: bytes
    pairs: int
    pages_skipped: dict[str, int] = field(default_factory=dict)
    images_dropped: dict[str, int] = field(default_factory=dict)
    urls: tuple[str, ...] | None = None  # the image URLs kept, where they matter
    why: str = ""


def warc_record(rec_type: bytes, target: bytes, block: bytes) -> bytes:
    """One gzip member holding a WARC/1.0 record; ``target`` goes into the header as raw bytes."""
    record_id = f"<urn:uuid:{uuid.uuid4()}>".encode()
    headers = (
        b"WARC/1.0\r\nWARC-Type: " + rec_type + b"\r\nWARC-Date: 2026-02-07T12:00:00Z\r\n"
        b"WARC-Record-ID: " + record_id + b"\r\nWARC-Target-URI: " + target + b"\r\n"
        b"Content-Type: application/http; msgtype=response\r\nContent-Length: " + str(len(block)).encode() + b"\r\n\r\n"
    )
    return gzip.compress(headers + block + b"\r\n\r\n", compresslevel=1, mtime=0)


def http_response(body: bytes, headers: tuple[tuple[str, str], ...] = HTML_UTF8, status: bytes = b"200 OK") -> bytes:
    head = b"".join(f"{k}: {v}\r\n".encode("latin-1") for k, v in headers)
    return b"HTTP/1.1 " + status + b"\r\n" + head + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body


def page_warc(body: bytes, headers: tuple[tuple[str, str], ...] = HTML_UTF8, target: bytes = PAGE) -> bytes:
    return warc_record(b"response", target, http_response(body, headers))


def img(src: bytes, alt: bytes = CAPTION_HTML) -> bytes:
    return b'<img src="' + src + b'" alt="' + alt + b'">'


def html(*parts: bytes) -> bytes:
    return b"<!doctype html><html><head><title>t</title></head><body>" + b"".join(parts) + b"</body></html>"


def gzip_bomb(inflated_bytes: int, filler: bytes = b"\0") -> bytes:
    """A gzip body of ``inflated_bytes`` once inflated, about 1/1000 of that on the wire (streamed, never held)."""
    chunk = filler * ((1 << 20) // len(filler))
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    out = [compressor.compress(chunk) for _ in range(inflated_bytes // len(chunk))]
    return b"".join(out) + compressor.flush()


HOSTILE_URL_SRCS: dict[str, tuple[bytes, str | None]] = {
    # src attribute -> the drop reason (None: kept)
    "javascript": (b"javascript:alert(document.cookie)", "unsupported_scheme"),
    "javascript_mixed_case": (b" JaVaScRiPt:alert(1)", "unsupported_scheme"),
    "file": (b"file:///etc/passwd", "unsupported_scheme"),
    "ftp": (b"ftp://files.example.cn/a.jpg", "unsupported_scheme"),
    "gopher": (b"gopher://127.0.0.1:6379/_FLUSHALL", "unsupported_scheme"),
    "data": (b"data:image/svg+xml;base64,PHN2Zz48L3N2Zz4=", "data_uri"),
    "credentials": (b"http://admin:hunter2@img.example.cn/a.jpg", "url_with_credentials"),
    "credentials_user_only": (b"https://token@img.example.cn/a.jpg", "url_with_credentials"),
    "credentials_entity_escaped": (b"http://u&#58;p&#64;img.example.cn/a.jpg", "url_with_credentials"),
    "bad_port": (b"http://img.example.cn:99999/a.jpg", "invalid_url"),
    "no_host": (b"http:///a.jpg", "invalid_url"),
    "bracket": (b"http://[::1/a.jpg", "invalid_url"),
    "megabyte_url": (b"https://img.example.cn/" + b"a" * 3000, "url_too_long"),
    "traversal_path": (b"/../../../../etc/passwd", None),  # resolves to https://hostile.example.cn/etc/passwd
}

# Strings that end up in object keys when a key is built from a URL or host.
HOSTILE_KEY_TEXTS: tuple[str | bytes, ...] = (
    "../../etc/passwd", "..", ".", "/abs/olute", "a/../../b", "C:\\Windows\\system32", "\\\\server\\share",
    "http://evil.example/../../x", "x\x00y", "%2e%2e%2f%2e%2e", "\udcff\udcfe", "ｆｕｌｌ／ｗｉｄｔｈ",
    ".hidden.tmp-0123456789abcdef0123456789abcdef", "a" * 5000, "https://user:pw@h/x?y=1#z", "",
    b"\xff\xfe/\x80..", "\u202e\u2066rtl", "con", "x/" * 600,
)  # fmt: skip


@functools.cache
def generated_warcs() -> tuple[HostileWarc, ...]:
    cases = [
        HostileWarc(
            "gzip_bomb_256mib", page_warc(gzip_bomb(256 << 20), HTML_UTF8 + (("Content-Encoding", "gzip"),)),
            pairs=0, pages_skipped={"content_decoding_error": 1},
            why="256 MiB of zeros in ~250 KB: inflation stops at the reader's cap",
        ),
        HostileWarc(
            "gzip_bomb_under_cap", page_warc(gzip_bomb(40 << 20, b"<p>"), HTML_UTF8 + (("Content-Encoding", "gzip"),)),
            pairs=0, pages_skipped={"body_too_large": 1},
            why="40 MiB of markup from ~100 KB: larger than max_page_bytes once inflated",
        ),
        HostileWarc(
            "gzip_encoded_page", page_warc(gzip.compress(html(img(b"/cat.jpg")), mtime=0),
                                           HTML_UTF8 + (("Content-Encoding", "gzip"),)),
            pairs=1, urls=("https://hostile.example.cn/cat.jpg",), why="an honest gzip body is inflated and parsed",
        ),
        HostileWarc(
            "gzip_header_on_plain_body", page_warc(html(img(b"/cat.jpg")), HTML_UTF8 + (("Content-Encoding", "gzip"),)),
            pairs=1, why="Common Crawl keeps the header of bodies it stored inflated",
        ),
        HostileWarc(
            "corrupt_gzip_body", page_warc(gzip.compress(html(img(b"/cat.jpg")), mtime=0)[:-40] + b"\x00" * 40,
                                           HTML_UTF8 + (("Content-Encoding", "gzip"),)),
            pairs=0, pages_skipped={"content_decoding_error": 1},
        ),
        HostileWarc(
            "img_tags_100k", page_warc(html(*(img(b"/%d.jpg" % i, b"t%d" % i) for i in range(100_000)))),
            pairs=1000, images_dropped={"too_many_images_on_page": 99_000},
            why="max_images_per_page caps one page's pairs",
        ),
        HostileWarc(
            "megabyte_alt", page_warc(html(img(b"/a.jpg", "长".encode() * 400_000), img(b"/b.jpg"))),
            pairs=1, images_dropped={"text_too_long": 1},
        ),
        HostileWarc(
            "megabyte_attributes_elsewhere", page_warc(html(b'<div data-x="' + b"x" * 4_000_000 + b'">', img(b"/b.jpg"), b"</div>")),
            pairs=1, why="a 4 MB attribute outside <img> does not stop the page",
        ),
        HostileWarc(
            "page_over_max_bytes", page_warc(html(img(b"/a.jpg"), b" " * (6 << 20))),
            pairs=0, pages_skipped={"body_too_large": 1},
        ),
        HostileWarc(
            "invalid_utf8_in_src", page_warc(html(img(b"/\xff\xfe\x80.jpg"), img(b"/ok.jpg", CAPTION_HTML[:3] + b"\xff" + CAPTION_HTML[3:]))),
            pairs=2, why="undecodable bytes become U+FFFD; URLs and text stay valid UTF-8",
        ),
        HostileWarc(
            "invalid_utf8_in_target_uri", page_warc(html(img(b"cat.jpg")), target=b"https://hostile.example.cn/\xff\xfe/p.html"),
            pairs=1,
        ),
        HostileWarc(
            "nul_and_controls", page_warc(html(img(b"/a\x00b.jpg"), img(b"/\x01\x1b[31m.jpg", b"\x1b[2J" + CAPTION_HTML))),
            pairs=2,
        ),
        HostileWarc(
            "hostile_schemes_and_credentials",
            page_warc(html(*(img(src) for src, _ in HOSTILE_URL_SRCS.values()))),
            pairs=sum(1 for _, reason in HOSTILE_URL_SRCS.values() if reason is None),
            images_dropped=_count(reason for _, reason in HOSTILE_URL_SRCS.values() if reason),
            urls=("https://hostile.example.cn/etc/passwd",),
        ),
        HostileWarc(
            "deeply_nested_markup", page_warc(html(b"<div>" * 50_000, img(b"/deep.jpg"), b"</div>" * 50_000)),
            pairs=1,
        ),
        HostileWarc(
            "status_and_type_lies",
            page_warc(html(img(b"/a.jpg")), (("Content-Type", "image/jpeg"),))
            + warc_record(b"response", PAGE, http_response(html(img(b"/a.jpg")), status=b"302 Found"))
            + warc_record(b"response", PAGE, b"not an http response at all\r\n\r\n"),
            pairs=0, pages_skipped={"not_html": 1, "http_status_not_200": 1, "not_http": 1},
        ),
        HostileWarc(
            "content_length_lie", warc_record(b"response", PAGE, _declared_longer(http_response(html(img(b"/a.jpg"))))),
            pairs=1, why="Common Crawl stores payloads re-encoded: HTTP Content-Length is not the record's length",
        ),
        HostileWarc(
            "truncated_gzip_member", page_warc(html(img(b"/a.jpg"))) + page_warc(html(img(b"/b.jpg")))[:-25],
            pairs=1, pages_skipped={"truncated_record": 1},
            why="pages before the cut stand; the cut record is counted, never half-parsed",
        ),
    ]  # fmt: skip
    return tuple(cases)


def _declared_longer(response: bytes) -> bytes:
    head, sep, body = response.partition(b"\r\n\r\n")
    return head.replace(b"Content-Length: %d" % len(body), b"Content-Length: %d" % (len(body) + 500)) + sep + body


def _count(reasons) -> dict[str, int]:
    out: dict[str, int] = {}
    for reason in reasons:
        out[reason] = out.get(reason, 0) + 1
    return out
