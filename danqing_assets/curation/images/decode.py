"""Decoding downloaded image bytes that survives anything, and the visual measurements.

Free of Dagster. :func:`decode_image` turns the bytes of one download into a
:class:`DecodedImage` (an RGB image, EXIF orientation applied, longest side at most
``DecodeLimits.max_side``) or raises :class:`ImageRejected` with a short ``reason``
that the image stage counts. No other exception and no warning leaves it:

===================== ===============================================================
reason                when
===================== ===============================================================
``not_an_image``      Pillow cannot identify the bytes (HTML error page, Word file,
                      HEIF without a plugin, a GIF with zero width, SVG, ...)
``decompression_bomb``the header claims more than ``max_pixels`` pixels; or the frames
                      of an animation together do (frames x width x height); or a GIF
                      frame's extents reach outside the canvas to such a size; or Pillow
                      itself calls it a bomb (its ``DecompressionBombWarning`` is turned
                      into this rejection); or a PNG text chunk inflates past Pillow's
                      ``MAX_TEXT_CHUNK``
``truncated_image``   the compressed data end early (Pillow: "image file is truncated")
``corrupt_image``     any other failure to decode
``empty_image``       width or height 0
``unsupported_mode``  a pixel mode we cannot turn into RGB
===================== ===============================================================

Pixel limits are checked from the header *before* any pixel is decoded, against our
own limit: the process-wide ``PIL.Image.MAX_IMAGE_PIXELS`` is never changed. Pillow's
own check still runs at that global (default 89.5 Mpx warns, 179 Mpx raises); both end
as ``decompression_bomb``. Warnings are silenced and ``DecompressionBombWarning`` is
made an error with :func:`warnings.catch_warnings` around each call only. (That context
manager swaps the process's filter list: run decoders in processes or in one thread per
process, which is how the pipeline runs them; threads would still decode correctly, but
a warning raised in another thread meanwhile may be shown or hidden.)

Only the first frame of an animation (GIF, APNG, animated WebP/AVIF, MPO) is used.
JPEGs at least twice the stored size are decoded at a reduced DCT scale (``draft``:
1/2, 1/4 or 1/8, the smallest that stays at or above the stored size), then resized. Conversions to RGB:
CMYK through its ICC profile when it has one (else Pillow's conversion); anything
with transparency (RGBA, LA, PA, palette or grey or RGB with a tRNS colour key) is
composited on white; 16-bit grey (``I;16*``, and ``I`` holding 16-bit values) is
scaled 65535 -> 255 by division, never clipped; float ``F`` is scaled; 1-bit goes
through L.

Measurements (:func:`image_metrics`, :func:`phash64`) are taken on the *stored* image
(longest side <= ``max_side``), grey values by ITU-R 601 (Pillow's ``convert("L")``).
The paper does not say at which resolution it measured; measuring the stored image
makes every value reproducible from the released images, and it keeps the cost of a
measurement bounded whatever the original size. The Laplacian variance does depend on
scale (downscaling sharpens): thresholds are therefore meant for the stored size.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass

import numpy as np
import imagehash
from PIL import Image, ImageCms, UnidentifiedImageError

__all__ = [
    "DecodeLimits",
    "DecodedImage",
    "ImageMetrics",
    "ImageRejected",
    "REJECT_REASONS",
    "WEB_FORMATS",
    "decode_image",
    "encode_jpeg",
    "grayscale",
    "image_metrics",
    "laplacian_variance",
    "measure_image",
    "phash64",
    "phash_to_signed",
    "phash_to_unsigned",
]

REJECT_REASONS = (
    "not_an_image",
    "decompression_bomb",
    "truncated_image",
    "corrupt_image",
    "empty_image",
    "unsupported_mode",
)

# Formats a web image may come in (MPO opens through the JPEG entry). Restricting Image.open to these keeps Pillow from
# handing an arbitrary download to a loader that shells out (EPS → Ghostscript) or that
# identifies random bytes too eagerly (TGA, DIB, PCD, ...).
WEB_FORMATS: tuple[str, ...] = (
    "JPEG", "PNG", "GIF", "WEBP", "AVIF", "BMP", "ICO", "TIFF", "JPEG2000",
)

# The table of ImageOps.exif_transpose (Pillow 13), applied after the resize.
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_ORIENTATION_TAG = 0x0112
_WHITE = (255, 255, 255)
_SRGB = None  # built on first use of a CMYK profile
_memfd_create = getattr(os, "memfd_create", None)  # Linux


@dataclass(frozen=True)
class DecodeLimits:
    max_pixels: int = 64_000_000
    """Most pixels an image may claim (width x height, x frames for animations)."""
    max_side: int = 1024
    """Stored images are resized so that their longest side is at most this."""
    jpeg_quality: int = 90
    formats: tuple[str, ...] | None = WEB_FORMATS
    """Pillow formats tried; None: every format Pillow has a plugin for."""
    resample: Image.Resampling = Image.Resampling.BICUBIC
    """Filter of the resize to ``max_side``. Pillow's filters all widen with the scale, so all
    antialias. BICUBIC (as ``Image.thumbnail``): on 1024-1600 px JPEGs, one core, it costs
    ~25 ms where LANCZOS costs ~33 ms, BILINEAR ~20 and BOX ~16 (decode included); the
    Laplacian variance it leaves is ~0.9x LANCZOS's (BILINEAR ~0.7x, BOX ~1.0x). Changing it
    changes the stored pixels of every image over ``max_side``, and with them some pHashes: against
    BICUBIC, HAMMING (~2.4 ms less per image on the image benchmark) changed 3 of 124 such
    synthetic and 1 of 9 such real images' hashes, BOX (~3.9 ms less) 4 of 124 and 4 of 9."""

    @classmethod
    def from_settings(cls, settings) -> DecodeLimits:
        return cls(
            max_pixels=settings.image_max_pixels,
            max_side=settings.image_max_side,
            jpeg_quality=settings.image_jpeg_quality,
        )


class ImageRejected(Exception):
    """The bytes are not an image we can use; ``reason`` is one of :data:`REJECT_REASONS`."""

    def __init__(self, reason: str, message: str = "") -> None:
        super().__init__(f"{reason}: {message}" if message else reason)
        self.reason = reason
        self.message = message


@dataclass
class DecodedImage:
    image: Image.Image
    """RGB, orientation applied, longest side <= max_side."""
    width: int
    height: int
    orig_width: int
    """Size after the EXIF transposition, before the resize."""
    orig_height: int
    format: str
    """Pillow's name of the format sniffed from the bytes (JPEG, PNG, GIF, WEBP, MPO, ...)."""
    mode: str
    """Pillow's pixel mode of the original (RGB, L, P, CMYK, I;16, RGBA, ...)."""
    frames: int
    transposed: bool


@dataclass(frozen=True)
class ImageMetrics:
    pixel_std: float
    """Population standard deviation of the grey values (0-255)."""
    laplacian_var: float
    """Variance of the 4-neighbour Laplacian of the grey image (OpenCV ksize=1, BORDER_REFLECT_101)."""
    entropy: float
    """Shannon entropy in bits of the 256-bin grey histogram (0 to 8)."""


# --------------------------------------------------------------------------- decoding


def decode_image(data: bytes, limits: DecodeLimits = DecodeLimits()) -> DecodedImage:
    """Decode one download; raise :class:`ImageRejected` when it cannot be used."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            return _decode(data, limits)
        except ImageRejected:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
            raise ImageRejected("decompression_bomb", str(error)) from None
        except UnidentifiedImageError as error:
            raise ImageRejected("not_an_image", str(error)) from None
        except MemoryError:
            raise ImageRejected("decompression_bomb", "out of memory while decoding") from None
        except Exception as error:  # noqa: BLE001 - any decoder failure is a counted reason
            raise ImageRejected(_failure_reason(error), f"{type(error).__name__}: {error}") from None


def _failure_reason(error: Exception) -> str:
    text = str(error).lower()
    if isinstance(error, EOFError) or "truncat" in text:
        return "truncated_image"
    if isinstance(error, ValueError) and "decompressed data too large" in text:
        return "decompression_bomb"  # PNG text chunk past MAX_TEXT_CHUNK (a zlib bomb)
    return "corrupt_image"


def _decode(data: bytes, limits: DecodeLimits) -> DecodedImage:
    if not data:
        raise ImageRejected("not_an_image", "no bytes")
    im = Image.open(io.BytesIO(data), formats=limits.formats)
    fmt = im.format or "unknown"
    mode = im.mode
    width, height = im.size
    if width <= 0 or height <= 0:
        raise ImageRejected("empty_image", f"{width}x{height}")
    if width * height > limits.max_pixels:
        raise ImageRejected("decompression_bomb", f"{width}x{height} > {limits.max_pixels} pixels")

    frames = _frame_count(im, data, limits)

    # Target size (in the file's orientation, i.e. before the transposition).
    long_side = max(width, height)
    if long_side > limits.max_side:
        scale = limits.max_side / long_side
        target = (max(1, min(limits.max_side, round(width * scale))), max(1, min(limits.max_side, round(height * scale))))
        if fmt in ("JPEG", "MPO"):
            im.draft(None, target)  # DCT scaling 1/2, 1/4, 1/8 while the result stays >= target
    else:
        target = (width, height)

    im.load()
    orientation = _orientation(im)
    icc = im.info.get("icc_profile")
    rgb = _to_rgb(im, icc)
    if rgb.size != target:
        rgb = rgb.resize(target, limits.resample, reducing_gap=2.0)  # box-reduce first when >= 4x
    method = _TRANSPOSE.get(orientation)
    if method is not None:
        rgb = rgb.transpose(method)
    # The stored image carries nothing of the source's metadata but an RGB colour profile.
    rgb.info = {"icc_profile": icc} if _is_rgb_profile(icc) and mode != "CMYK" else {}
    swap = orientation in (5, 6, 7, 8)
    orig_w, orig_h = (height, width) if swap else (width, height)
    return DecodedImage(
        image=rgb,
        width=rgb.width,
        height=rgb.height,
        orig_width=orig_w,
        orig_height=orig_h,
        format=fmt,
        mode=mode,
        frames=frames,
        transposed=method is not None,
    )


def _frame_count(im: Image.Image, data: bytes, limits: DecodeLimits) -> int:
    """Frames the file claims; reject when they, or a GIF frame's extents, make a bomb."""
    width, height = im.size
    if im.format == "GIF":
        # Pillow only sizes later GIF frames when it decodes them; a frame may claim
        # extents far outside the canvas. Read the frame descriptors without decoding.
        frames, need_w, need_h = _scan_gif(data)
        frames = max(frames, 1)
        if need_w * need_h > limits.max_pixels:
            raise ImageRejected("decompression_bomb", f"a GIF frame reaches {need_w}x{need_h}")
    else:
        try:
            frames = int(getattr(im, "n_frames", 1) or 1)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise
        except Exception as error:  # noqa: BLE001 - a broken frame index is a broken file
            raise ImageRejected(_failure_reason(error), f"frame count: {type(error).__name__}: {error}") from None
    if frames > 1 and frames * width * height > limits.max_pixels:
        raise ImageRejected("decompression_bomb", f"{frames} frames x {width}x{height} > {limits.max_pixels} pixels")
    if frames > 1:
        im.seek(0)
    return frames


def _scan_gif(data: bytes) -> tuple[int, int, int]:
    """(frames, canvas width, canvas height) a GIF needs, from its block structure alone."""
    n = len(data)
    if n < 13:
        return 0, 0, 0
    need_w, need_h = data[6] | data[7] << 8, data[8] | data[9] << 8
    flags = data[10]
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
    frames = 0
    while pos < n:
        tag = data[pos]
        pos += 1
        if tag == 0x3B:  # trailer
            break
        if tag == 0x21:  # extension: label, then data sub-blocks
            pos = _skip_sub_blocks(data, pos + 1)
        elif tag == 0x2C:  # image descriptor
            if pos + 9 > n:
                break
            x0, y0 = data[pos] | data[pos + 1] << 8, data[pos + 2] | data[pos + 3] << 8
            w, h = data[pos + 4] | data[pos + 5] << 8, data[pos + 6] | data[pos + 7] << 8
            need_w, need_h = max(need_w, x0 + w), max(need_h, y0 + h)
            frames += 1
            local = data[pos + 8]
            pos += 9 + (3 << ((local & 7) + 1) if local & 0x80 else 0)
            pos = _skip_sub_blocks(data, pos + 1)  # after the LZW minimum code size
        # anything else: a stray byte, skipped as Pillow does
    return frames, need_w, need_h


def _skip_sub_blocks(data: bytes, pos: int) -> int:
    n = len(data)
    while pos < n:
        size = data[pos]
        pos += 1
        if size == 0:
            break
        pos += size
    return pos


def _orientation(im: Image.Image) -> int:
    """EXIF (or XMP) orientation as ImageOps.exif_transpose reads it; 1 when absent or broken."""
    try:
        value = im.getexif().get(_ORIENTATION_TAG, 1)
    except Exception:  # noqa: BLE001 - broken EXIF means no orientation, not a broken image
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _is_rgb_profile(icc) -> bool:
    return isinstance(icc, bytes) and len(icc) >= 20 and icc[16:20] == b"RGB "


def _to_rgb(im: Image.Image, icc) -> Image.Image:
    mode = im.mode
    if mode == "RGB" and "transparency" not in im.info:
        return im
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        "transparency" in im.info and mode in ("P", "L", "RGB", "1")
    ):
        rgba = im if mode == "RGBA" else im.convert("RGBA")
        return _on_white(rgba)
    if mode == "L":
        return im.convert("RGB")
    if mode == "P":
        return im.convert("RGB")
    if mode == "1":
        return im.convert("L").convert("RGB")
    if mode == "CMYK":
        return _cmyk_to_rgb(im, icc)
    if mode.startswith("I") or mode == "F":
        grey, alpha = _deep_to_l(im)
        if alpha is not None:
            white = Image.new("L", grey.size, 255)
            white.paste(grey, (0, 0), alpha)
            grey = white
        return grey.convert("RGB")
    try:
        return im.convert("RGB")  # YCbCr, HSV, RGBX, ...
    except (ValueError, OSError) as error:
        raise ImageRejected("unsupported_mode", f"{mode}: {error}") from None


def _on_white(rgba: Image.Image) -> Image.Image:
    alpha = rgba.getchannel("A")
    low, _ = alpha.getextrema()
    if low == 255:
        return rgba.convert("RGB")
    out = Image.new("RGB", rgba.size, _WHITE)
    out.paste(rgba, (0, 0), alpha)
    return out


def _cmyk_to_rgb(im: Image.Image, icc) -> Image.Image:
    global _SRGB
    if isinstance(icc, bytes) and len(icc) >= 20 and icc[16:20] == b"CMYK":
        try:
            if _SRGB is None:
                _SRGB = ImageCms.createProfile("sRGB")
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            return ImageCms.profileToProfile(im, source, _SRGB, outputMode="RGB")
        except Exception:  # noqa: BLE001 - a broken profile: fall back to the plain conversion
            pass
    return im.convert("RGB")


def _deep_to_l(im: Image.Image) -> tuple[Image.Image, Image.Image | None]:
    """16/32-bit integer or float grey to 8 bits by the range of the type, and a tRNS mask."""
    arr = np.asarray(im)
    trns = im.info.get("transparency")
    if arr.dtype.kind == "f":
        values = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        low, high = float(values.min()), float(values.max())
        if low >= 0.0 and high <= 1.0:
            scaled = values * 255.0
        elif low >= 0.0 and high <= 255.0:
            scaled = values
        else:
            scaled = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
        grey = np.rint(scaled).clip(0, 255).astype(np.uint8)
    else:
        low, high = int(arr.min()), int(arr.max())
        if low >= 0 and high <= 65535:  # 16-bit data (I;16*, or I holding 16-bit values)
            grey = ((arr.astype(np.uint32) + 128) // 257).astype(np.uint8)
        else:  # wider integers: map the image's own range
            wide = arr.astype(np.float64)
            grey = np.rint((wide - low) * (255.0 / (high - low))).astype(np.uint8)
    alpha = None
    if isinstance(trns, int) and not isinstance(trns, bool):
        alpha = Image.fromarray(np.where(arr == trns, 0, 255).astype(np.uint8), "L")
    return Image.fromarray(np.ascontiguousarray(grey), "L"), alpha


# --------------------------------------------------------------------------- encoding


def encode_jpeg(image: Image.Image, quality: int = 90, *, optimize: bool = True) -> bytes:
    """Baseline (not progressive), Huffman-optimised RGB JPEG; no EXIF, XMP or comment.

    An RGB ICC profile the decoder kept in ``image.info`` is embedded (colours stay right);
    nothing else of the source's metadata is. ``optimize`` (two-pass Huffman tables) makes
    files ~5 % smaller but, with Pillow 13 / libjpeg-turbo 3.2 on one core, costs ~2.7x the
    time of a plain encode (1024x768: ~6.5 ms instead of ~2.4 ms).
    """
    if image.mode != "RGB":
        image = image.convert("RGB")
    options = {"quality": quality, "optimize": optimize, "progressive": False, "comment": b""}
    icc = image.info.get("icc_profile")
    if _is_rgb_profile(icc):
        options["icc_profile"] = icc
    if _memfd_create is None:  # not Linux: the same bytes, with the GIL held while encoding
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", **options)
        return buffer.getvalue()
    # Pillow encodes into a BytesIO holding the GIL, but into a real file descriptor with the GIL
    # released (ImageFile._save's encode_to_file): an in-memory file lets the decode threads encode
    # in parallel with each other and with the event loop. Same encoder, same bytes.
    with open(_memfd_create("danqing-jpeg", os.MFD_CLOEXEC), "w+b", buffering=0) as file:
        image.save(file, "JPEG", **options)
        file.seek(0)
        return file.read()


# --------------------------------------------------------------------------- measurements


def grayscale(image: Image.Image) -> Image.Image:
    """ITU-R 601-2 luma (Pillow's ``convert("L")``); an L image is returned as is."""
    return image if image.mode == "L" else image.convert("L")


def laplacian_variance(grey: np.ndarray) -> float:
    """Variance of ``cv2.Laplacian(grey, cv2.CV_64F)`` (ksize=1: kernel [[0,1,0],[1,-4,1],[0,1,0]],
    default border BORDER_REFLECT_101, i.e. numpy's ``mode="reflect"``), over every pixel."""
    if grey.size == 0:
        return 0.0
    if min(grey.shape) > 1:
        p = np.pad(grey, 1, mode="reflect")
    else:  # a side of one pixel: OpenCV's reflect-101 maps -1 and 1 to that pixel
        p = grey[np.ix_(*(_reflect101_index(n) for n in grey.shape))]
    p = p.astype(np.int16)
    lap = p[:-2, 1:-1] + p[2:, 1:-1]
    lap += p[1:-1, :-2]
    lap += p[1:-1, 2:]
    lap -= 4 * p[1:-1, 1:-1]
    # Exact integer sums (|lap| <= 1020, so a square fits int32 and 64 Mpx of squares fit int64): no
    # float64 copy of the image and no BLAS call (whose threads only contend with the decode pool).
    flat = lap.ravel().astype(np.int32)
    n = flat.size
    total = int(flat.sum(dtype=np.int64))
    flat *= flat
    squares = int(flat.sum(dtype=np.int64))
    return max(0.0, (n * squares - total * total) / (n * n))


def _reflect101_index(n: int) -> np.ndarray:
    index = np.arange(-1, n + 1)
    if n == 1:
        return np.zeros(3, dtype=np.intp)
    index[0], index[-1] = 1, n - 2
    return index


def _histogram_stats(grey: Image.Image) -> tuple[float, float]:
    hist = np.asarray(grey.histogram(), dtype=np.float64)
    n = hist.sum()
    if n == 0:
        return 0.0, 0.0
    levels = np.arange(256, dtype=np.float64)
    mean = float(hist @ levels) / n
    var = float(hist @ (levels - mean) ** 2) / n
    p = hist[hist > 0] / n
    entropy = float(-(p * np.log2(p)).sum())
    return max(0.0, var) ** 0.5, max(0.0, entropy)


def image_metrics(image: Image.Image) -> ImageMetrics:
    """Pixel std, Laplacian variance and histogram entropy of the grey version of ``image``.

    Pass the stored image (RGB, or its :func:`grayscale` to skip one conversion).
    """
    grey = grayscale(image)
    std, entropy = _histogram_stats(grey)
    return ImageMetrics(pixel_std=std, laplacian_var=laplacian_variance(np.asarray(grey)), entropy=entropy)


def phash64(image: Image.Image) -> int:
    """``imagehash.phash`` (8x8, 64 bits) as a signed int64-compatible int (for parquet Int64).

    imagehash converts to L itself, so the grey image gives the same hash as the RGB one.
    """
    bits = np.packbits(imagehash.phash(image).hash.ravel())
    return int.from_bytes(bits.tobytes(), "big", signed=True)


def measure_image(image: Image.Image) -> tuple[ImageMetrics, int]:
    """Metrics and signed pHash of a stored image, converting it to grey once."""
    grey = grayscale(image)
    return image_metrics(grey), phash64(grey)


def phash_to_unsigned(value: int) -> int:
    """Signed int64 pHash -> the unsigned 64-bit value (``format(v, "016x")`` is imagehash's hex)."""
    return value & 0xFFFF_FFFF_FFFF_FFFF


def phash_to_signed(value: int) -> int:
    """Unsigned 64-bit pHash -> the signed int64 it is stored as."""
    value &= 0xFFFF_FFFF_FFFF_FFFF
    return value - (1 << 64) if value >= 1 << 63 else value
