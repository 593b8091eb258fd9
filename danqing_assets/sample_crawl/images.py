"""Procedural images for the sample crawl: varied, deterministic, and flawed on purpose.

An :class:`ImageSpec` says what lives at one URL; :func:`render_image` turns it
into the bytes the sample server hands out (``None``: the URL is a 404). Every
picture is drawn from its own seed, so a near-duplicate is the same drawing
re-encoded or resized, and two different seeds give different perceptual
hashes (the coarse random colour grid dominates the low frequencies).
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageFont

# What a downstream stage is expected to do with an image of each kind.
IMAGE_KINDS: dict[str, str] = {
    "good": "keep",
    "cmyk": "keep (convert to RGB)",
    "palette_alpha": "keep (flatten transparency)",
    "near_duplicate": "drop as duplicate of duplicate_of",
    "exact_duplicate": "drop as duplicate of duplicate_of (same bytes)",
    "srcset_variant": "smaller srcset candidate of duplicate_of",
    "tiny": "drop (too small)",
    "huge": "drop or downscale (6000x4000)",
    "extreme_aspect": "drop (aspect ratio)",
    "blurred": "drop (blur)",
    "blank": "drop (single colour)",
    "text_heavy": "drop (text covers the image)",
    "broken_truncated": "drop (decode error)",
    "broken_random": "drop (not an image)",
    "not_an_image": "drop (HTML served as .jpg)",
    "missing_404": "drop (HTTP 404)",
    "robots_disallowed": "drop (robots.txt)",
    "data_uri": "ignore (inline data: URI)",
    "logo": "drop (site chrome)",
    "qr_code": "drop (site chrome)",
    "captcha": "drop (site chrome)",
    "placeholder": "not an <img> target: lazy-load placeholder",
}

_NOISE_TILE = 1400  # larger than any noisy photo the planner asks for
EXTENSIONS = {"jpeg": "jpg", "png": "png", "webp": "webp", "gif": "gif"}


@dataclass(frozen=True)
class ImageSpec:
    """One image file at one URL.

    ``base_size`` is the size the seed's picture is drawn at; ``size`` is what
    gets stored (they differ for resized near-duplicates and srcset variants).
    """

    url: str
    kind: str
    fmt: str
    size: tuple[int, int]
    seed: int
    base_size: tuple[int, int] | None = None
    quality: int = 85
    duplicate_of: str | None = None


def render_image(spec: ImageSpec) -> bytes | None:
    """The stored bytes for ``spec``; ``None`` when the URL should answer 404."""
    if spec.kind == "missing_404":
        return None
    maker = _SPECIAL_MAKERS.get(spec.kind)
    if maker is not None:
        return maker(spec)
    return _encode(_photo_for(spec), spec)


def placeholder_gif() -> bytes:
    """A 1×1 transparent GIF, the classic lazy-load placeholder (drawn here, not copied)."""
    img = Image.new("P", (1, 1), 0)
    img.putpalette([255, 255, 255] * 2)
    out = io.BytesIO()
    img.save(out, "GIF", transparency=0)
    return out.getvalue()


def small_png(seed: int) -> bytes:
    """A small PNG for inline ``data:`` URIs."""
    return _encode(_photo(seed, (24, 24), graphic=True), ImageSpec("", "data_uri", "png", (24, 24), seed))


def small_jpeg(seed: int) -> bytes:
    """A small JPEG, used as the body of a non-HTML WARC response."""
    return _encode(_photo(seed, (200, 150)), ImageSpec("", "good", "jpeg", (200, 150), seed))


# --- drawing ------------------------------------------------------------------


def _photo_for(spec: ImageSpec) -> Image.Image:
    base_size = spec.base_size or spec.size
    # PNG and GIF pictures are drawn flat (graphics-like) so they compress like real ones.
    picture = _photo(spec.seed, base_size, graphic=spec.fmt in ("png", "gif"))
    if base_size != spec.size:
        picture = picture.resize(spec.size, Image.Resampling.LANCZOS)
    return picture


def _photo(seed: int, size: tuple[int, int], *, graphic: bool = False) -> Image.Image:
    """Colour grid + gradient + shapes + mild noise: a cheap stand-in for a photo.

    The grid and gradient are computed on a 64-pixel-wide thumbnail and scaled
    up, which keeps a few hundred images within a couple of seconds.
    """
    rnd = np.random.default_rng(seed)
    width, height = size
    grid = rnd.integers(0, 256, size=(int(rnd.integers(2, 6)), int(rnd.integers(2, 6)), 3), dtype=np.uint8)
    if graphic:
        img = Image.fromarray(grid, "RGB").resize(size, Image.Resampling.NEAREST)
    else:
        thumb_size = (64, max(2, 64 * height // width))
        thumb = np.asarray(Image.fromarray(grid, "RGB").resize(thumb_size, Image.Resampling.NEAREST), dtype=np.int16)
        thumb = np.clip(thumb + _gradient(rnd, *thumb_size), 0, 255).astype(np.uint8)
        img = Image.fromarray(thumb, "RGB").resize(size, Image.Resampling.BILINEAR)
    img = ImageChops.add(img, _noise(rnd, width, height), offset=-28)
    _draw_shapes(ImageDraw.Draw(img), rnd, width, height)
    return img


@lru_cache(maxsize=1)
def _noise_tile() -> np.ndarray:
    """One shared field of grain; each photo takes a crop at its own offset (cheaper than fresh noise).

    Strong enough that the pictures have the fine detail of real photos (variance of the
    Laplacian above the paper's blur threshold of 1000); the blurred kind smooths it away.
    """
    # 2×2-pixel luminance grain: JPEG's chroma subsampling and quantisation keep most of it.
    grain = np.random.default_rng(0).integers(0, 57, size=(_NOISE_TILE // 2, _NOISE_TILE // 2), dtype=np.uint8)
    grain = grain.repeat(2, axis=0).repeat(2, axis=1)
    return np.repeat(grain[:, :, None], 3, axis=2)


def _noise(rnd: np.random.Generator, width: int, height: int) -> Image.Image:
    tile = _noise_tile()
    top, left = int(rnd.integers(0, _NOISE_TILE - height + 1)), int(rnd.integers(0, _NOISE_TILE - width + 1))
    return Image.fromarray(np.ascontiguousarray(tile[top : top + height, left : left + width]), "RGB")


def _gradient(rnd: np.random.Generator, width: int, height: int) -> np.ndarray:
    angle = rnd.uniform(0, 2 * np.pi)
    xs = np.linspace(-1, 1, width, dtype=np.float32)[None, :]
    ys = np.linspace(-1, 1, height, dtype=np.float32)[:, None]
    ramp = np.cos(angle) * xs + np.sin(angle) * ys
    colour = rnd.integers(-60, 61, size=3).astype(np.float32)
    return (ramp[:, :, None] * colour).astype(np.int16)


def _draw_shapes(draw: ImageDraw.ImageDraw, rnd: np.random.Generator, width: int, height: int) -> None:
    for _ in range(int(rnd.integers(2, 7))):
        x0, x1 = sorted(rnd.integers(0, width, size=2).tolist())
        y0, y1 = sorted(rnd.integers(0, height, size=2).tolist())
        fill = tuple(rnd.integers(0, 256, size=3).tolist())
        shape = int(rnd.integers(3))
        if shape == 0:
            draw.ellipse((x0, y0, x1, y1), fill=fill)
        elif shape == 1:
            draw.rectangle((x0, y0, x1, y1), fill=fill)
        else:
            draw.line((x0, y0, x1, y1), fill=fill, width=max(1, min(width, height) // 30))


@lru_cache(maxsize=4)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _text_heavy(spec: ImageSpec) -> bytes:
    """A poster covered in lines of text, the kind a text-area filter should drop."""
    rnd = random.Random(spec.seed)
    width, height = spec.size
    img = Image.new("RGB", spec.size, tuple(rnd.randrange(200, 256) for _ in range(3)))
    draw = ImageDraw.Draw(img)
    font = _font(18)
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 "
    for y in range(4, height - 18, 22):
        line = "".join(rnd.choice(letters) for _ in range(width // 10))
        draw.text((6, y), line, fill=tuple(rnd.randrange(0, 90) for _ in range(3)), font=font)
        draw.line((0, y + 20, width, y + 20), fill=(120, 120, 120), width=1)
    return _encode(img, spec)


def _blurred(spec: ImageSpec) -> bytes:
    radius = 6 + spec.seed % 6
    return _encode(_photo(spec.seed, spec.size).filter(ImageFilter.GaussianBlur(radius)), spec)


def _blank(spec: ImageSpec) -> bytes:
    rnd = random.Random(spec.seed)
    colour = rnd.choice([(255, 255, 255), (240, 240, 240), (0, 0, 0), (200, 30, 30)])
    return _encode(Image.new("RGB", spec.size, colour), spec)


def _huge(spec: ImageSpec) -> bytes:
    """6000×4000 of flat colour blocks: a decoder/resizer stress that stays small on disk."""
    rnd = np.random.default_rng(spec.seed)
    grid = rnd.integers(0, 256, size=(4, 6, 3), dtype=np.uint8)
    img = Image.fromarray(grid, "RGB").resize(spec.size, Image.Resampling.NEAREST)
    return _encode(img, spec)


def _cmyk(spec: ImageSpec) -> bytes:
    out = io.BytesIO()
    _photo(spec.seed, spec.size).convert("CMYK").save(out, "JPEG", quality=spec.quality)
    return out.getvalue()


def _palette_alpha(spec: ImageSpec) -> bytes:
    """A palette PNG whose index 0 is transparent, with opaque shapes on top."""
    rnd = np.random.default_rng(spec.seed)
    width, height = spec.size
    img = Image.new("P", spec.size, 0)
    img.putpalette(rnd.integers(0, 256, size=16 * 3, dtype=np.uint8).tolist())
    draw = ImageDraw.Draw(img)
    for _ in range(int(rnd.integers(3, 8))):
        x0, x1 = sorted(rnd.integers(0, width, size=2).tolist())
        y0, y1 = sorted(rnd.integers(0, height, size=2).tolist())
        draw.ellipse((x0, y0, x1, y1), fill=int(rnd.integers(1, 16)))
    out = io.BytesIO()
    img.save(out, "PNG", transparency=0)
    return out.getvalue()


def _broken_truncated(spec: ImageSpec) -> bytes:
    """A real JPEG cut off half way, as an interrupted upload leaves it."""
    whole = _encode(_photo(spec.seed, spec.size), spec)
    return whole[: len(whole) // 2]


def _broken_random(spec: ImageSpec) -> bytes:
    rnd = random.Random(spec.seed)
    return rnd.randbytes(rnd.randrange(2000, 6000))


def _not_an_image(spec: ImageSpec) -> bytes:
    return "<html><head><title>404</title></head><body><p>图片不存在或已被删除</p></body></html>".encode()


def _logo(spec: ImageSpec) -> bytes:
    rnd = random.Random(spec.seed)
    img = Image.new("RGB", spec.size, (255, 255, 255))
    draw = ImageDraw.Draw(img)
    colour = tuple(rnd.randrange(0, 200) for _ in range(3))
    draw.ellipse((4, 4, spec.size[1] - 4, spec.size[1] - 4), fill=colour)
    draw.text((spec.size[1] + 6, spec.size[1] // 3), "DANQING", fill=colour, font=_font(20))
    return _encode(img, spec)


def _qr_code(spec: ImageSpec) -> bytes:
    """A QR-looking module grid with three finder squares (not a decodable code)."""
    rnd = np.random.default_rng(spec.seed)
    modules = rnd.integers(0, 2, size=(25, 25)).astype(bool)
    for top, left in ((0, 0), (0, 18), (18, 0)):
        modules[top : top + 7, left : left + 7] = True
        modules[top + 1 : top + 6, left + 1 : left + 6] = False
        modules[top + 2 : top + 5, left + 2 : left + 5] = True
    img = Image.fromarray(np.where(modules, 0, 255).astype(np.uint8), "L").resize(spec.size, Image.Resampling.NEAREST)
    return _encode(img, spec)


def _captcha(spec: ImageSpec) -> bytes:
    rnd = random.Random(spec.seed)
    img = Image.new("RGB", spec.size, (235, 235, 220))
    draw = ImageDraw.Draw(img)
    for i, ch in enumerate(rnd.choices("ABCDEFGHJKLMNPQRSTUVWXYZ23456789", k=4)):
        draw.text((8 + i * 26, rnd.randrange(2, 12)), ch, fill=(rnd.randrange(150), 40, 90), font=_font(24))
    for _ in range(5):
        draw.line([(rnd.randrange(spec.size[0]), rnd.randrange(spec.size[1])) for _ in range(2)], fill=(90, 90, 90))
    return _encode(img, spec)


def _placeholder(spec: ImageSpec) -> bytes:
    return placeholder_gif()


_SPECIAL_MAKERS = {
    "text_heavy": _text_heavy,
    "blurred": _blurred,
    "blank": _blank,
    "huge": _huge,
    "cmyk": _cmyk,
    "palette_alpha": _palette_alpha,
    "broken_truncated": _broken_truncated,
    "broken_random": _broken_random,
    "not_an_image": _not_an_image,
    "logo": _logo,
    "qr_code": _qr_code,
    "captcha": _captcha,
    "placeholder": _placeholder,
}


def _encode(img: Image.Image, spec: ImageSpec) -> bytes:
    out = io.BytesIO()
    if spec.fmt == "jpeg":
        img.convert("RGB").save(out, "JPEG", quality=spec.quality)
    elif spec.fmt == "webp":
        img.save(out, "WEBP", quality=spec.quality, method=0)
    elif spec.fmt == "gif":
        img.convert("RGB").quantize(64, method=Image.Quantize.FASTOCTREE).save(out, "GIF")
    else:
        img.save(out, "PNG")
    return out.getvalue()
