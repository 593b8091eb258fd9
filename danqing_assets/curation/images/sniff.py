"""Tell an image format from a body's first bytes, and read image bodies under a byte cap.

Servers label HTML error pages ``image/jpeg`` and real PNGs ``text/html``, so
the downloader trusts the magic numbers, never ``Content-Type``. SVG is not
counted as an image: it is XML, and the raster stages after this one cannot
decode it. A body is given up as soon as its first bytes show it is no
image, or as soon as it passes the cap (endless bodies included). Short
unread bodies (redirects, error pages) are read before closing, so the
connection (and its TLS handshake) is kept for the next request.
"""

from __future__ import annotations

import asyncio
import contextlib

import httpx

from danqing_assets.curation.images.reasons import EMPTY_BODY, NOT_AN_IMAGE, TOO_LARGE

_DRAIN_BYTES, _DRAIN_TIMEOUT_S = 64 * 1024, 1.0
# Bytes of a body that suffice to recognise every format below.
SNIFF_BYTES = 32

_PREFIXES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
    (b"II+\x00", "tiff"),  # BigTIFF
    (b"MM\x00+", "tiff"),
    (b"\xff\x0a", "jxl"),
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n", "jxl"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "jpeg2000"),
    (b"\xffO\xffQ", "jpeg2000"),  # raw codestream
)
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1", b"msf1"})
_BMP_DIB_SIZES = frozenset({12, 16, 40, 52, 56, 64, 108, 124})


def sniff_image_format(head: bytes) -> str | None:
    """The image format of a body starting with ``head`` (lower case, e.g. ``"jpeg"``), or None."""
    head = bytes(head[:SNIFF_BYTES])
    for prefix, name in _PREFIXES:
        if head.startswith(prefix):
            return name
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return _sniff_ftyp(head) or _sniff_bmp(head) or _sniff_ico(head)


def _sniff_ftyp(head: bytes) -> str | None:
    """AVIF and HEIF are ISO-BMFF files: a ``ftyp`` box with a major brand and compatible brands."""
    if head[4:8] != b"ftyp":
        return None
    box_size = int.from_bytes(head[:4], "big")
    brands = [head[8:12]] + [head[i : i + 4] for i in range(16, min(box_size, len(head)) - 3, 4)]
    if any(brand in _AVIF_BRANDS for brand in brands):
        return "avif"
    if any(brand in _HEIF_BRANDS for brand in brands):
        return "heif"
    return None


def _sniff_bmp(head: bytes) -> str | None:
    # "BM" alone is too weak (text can start with it): check the DIB header size too.
    if head[:2] == b"BM" and len(head) >= 18 and int.from_bytes(head[14:18], "little") in _BMP_DIB_SIZES:
        return "bmp"
    return None


def _sniff_ico(head: bytes) -> str | None:
    # Reserved 0, type 1 (icon) or 2 (cursor), then a non-zero image count.
    if len(head) >= 6 and head[:4] in (b"\x00\x00\x01\x00", b"\x00\x00\x02\x00") and head[4:6] != b"\x00\x00":
        return "ico"
    return None


async def read_image(response: httpx.Response, limit: int) -> tuple[str | None, bytes | None, str | None]:
    """(reason, body, format): the body streamed under the byte cap, given up early if it is no image."""
    length = response.headers.get("Content-Length", "")
    if length.isdigit() and int(length) > limit:
        return TOO_LARGE, None, None
    body, image_format = bytearray(), None
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > limit:
            return TOO_LARGE, None, None
        if image_format is None and len(body) >= SNIFF_BYTES:
            if (image_format := sniff_image_format(body)) is None:
                return NOT_AN_IMAGE, None, None
    if not body:
        return EMPTY_BODY, None, None
    image_format = image_format or sniff_image_format(body)
    return (None, bytes(body), image_format) if image_format else (NOT_AN_IMAGE, None, None)


async def release(response: httpx.Response) -> None:
    """Close a response; a short unread body (redirect, error page) is read first so the connection is reused."""
    length = response.headers.get("Content-Length", "")
    if not response.is_stream_consumed and length.isdigit() and int(length) <= _DRAIN_BYTES:
        with contextlib.suppress(httpx.HTTPError, TimeoutError):
            async with asyncio.timeout(_DRAIN_TIMEOUT_S):
                async for _ in response.aiter_raw():
                    pass
    await response.aclose()
