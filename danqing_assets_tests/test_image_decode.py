"""Image decoding against 64 real Pillow test images, the visual measurements and the visual filters."""

from __future__ import annotations

import io
import json
import math
import struct
import threading
import time
import warnings
import zlib
from collections import Counter
from pathlib import Path

import imagehash
import numpy as np
import polars as pl
import pytest
from PIL import Image, ImageFile, ImageFilter, ImageOps

from danqing_assets.curation.images import decode as decode_module
from danqing_assets.curation.images.decode import (
    REJECT_REASONS,
    DecodedImage,
    DecodeLimits,
    ImageMetrics,
    ImageRejected,
    decode_image,
    encode_jpeg,
    grayscale,
    image_metrics,
    laplacian_variance,
    measure_image,
    phash64,
    phash_to_signed,
    phash_to_unsigned,
)
from danqing_assets.curation.images.visual_filters import (
    VISUAL_REASONS,
    ImageSafetyClassifier,
    VisualFilterConfig,
    has_embedding_scores,
    load_image_classifier,
    safety_reject_reasons,
    visual_reject_reasons,
)
from danqing_assets.settings import Settings

from .realworld import REALWORLD

PILLOW_IMAGES = REALWORLD / "pillow-test-images"
MANIFEST = [json.loads(line) for line in (PILLOW_IMAGES / "manifest.jsonl").read_text().splitlines() if line.strip()]
BY_NAME = {entry["file"]: entry for entry in MANIFEST}
COCO_PHOTOS = sorted((REALWORLD / "coco-cn" / "sample_images").glob("*.jpg"))
DEADLINE_S = 10.0
WHITE = (255, 255, 255)

# What each of the 64 files comes to with the default limits: "ok" or the reason it is dropped.
# Where this differs from what the manifest's "load" field says, the manifest is the odd one out:
# truncated_end_chunk.png and broken_data_stream.png raise in Image.load() under Pillow 13 with
# LOAD_TRUNCATED_IMAGES off (the manifest's "ok" looks like a run with it on).
EXPECTED = {
    "broken.png": "not_an_image",
    "test-ole-file.doc": "not_an_image",
    "unknown_compression_method.png": "not_an_image",
    "zero_width.gif": "not_an_image",
    "avif_hopper.heif": "not_an_image",  # HEIF needs a plugin; AVIF itself decodes natively
    "decompression_bomb.gif": "decompression_bomb",
    "decompression_bomb.ico": "decompression_bomb",
    "decompression_bomb_extents.gif": "decompression_bomb",  # frame 2 reaches 65635x65635
    "png_decompression_dos.png": "decompression_bomb",  # zlib bomb in a text chunk
    "truncated_jpeg.jpg": "truncated_image",
    "truncated_image.png": "truncated_image",
    "truncated_end_chunk.png": "truncated_image",
    "ultrahdr.jpg": "truncated_image",
    "broken_data_stream.png": "corrupt_image",
}
EXPECTED_COUNTS = {
    "ok": 50,
    "not_an_image": 5,
    "decompression_bomb": 4,
    "truncated_image": 4,
    "corrupt_image": 1,
}


def run_with_deadline(fn, seconds: float = DEADLINE_S):
    """fn() in a daemon thread; fail the test when it has not returned within ``seconds``."""
    box: dict = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as error:  # noqa: BLE001 - handed to the caller
            box["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    started = time.perf_counter()
    thread.start()
    thread.join(seconds)
    elapsed = time.perf_counter() - started
    if thread.is_alive():
        pytest.fail(f"still running after {seconds} s")
    if "error" in box:
        raise box["error"]
    return box["value"], elapsed


def decode_file(name: str, limits: DecodeLimits) -> tuple[DecodedImage | ImageRejected, float]:
    data = (PILLOW_IMAGES / name).read_bytes()

    def attempt():
        try:
            return decode_image(data, limits)
        except ImageRejected as rejected:
            return rejected

    return run_with_deadline(attempt)


def decode_all(limits: DecodeLimits) -> dict[str, tuple[DecodedImage | ImageRejected, float]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        outcomes = {entry["file"]: decode_file(entry["file"], limits) for entry in MANIFEST}
    assert [str(w.message) for w in caught] == [], "a warning escaped decode_image"
    return outcomes


def outcome_name(result) -> str:
    return "ok" if isinstance(result, DecodedImage) else result.reason


def on_white(im: Image.Image) -> Image.Image:
    rgba = im.convert("RGBA")
    return Image.alpha_composite(Image.new("RGBA", rgba.size, WHITE + (255,)), rgba).convert("RGB")


def pixels(im: Image.Image) -> np.ndarray:
    return np.asarray(im, dtype=np.int16)


@pytest.fixture(scope="module")
def outcomes():
    return decode_all(DecodeLimits())


# --------------------------------------------------------------------------- the 64 files


def test_manifest_lists_every_file_in_the_directory():
    on_disk = {p.name for p in PILLOW_IMAGES.iterdir() if p.is_file()} - {"manifest.jsonl", "LICENSE", "SOURCE.txt"}
    assert on_disk == set(BY_NAME)
    assert len(MANIFEST) == len(BY_NAME) == 64
    assert set(EXPECTED) <= set(BY_NAME)


def test_every_file_decodes_or_is_rejected_with_its_expected_reason(outcomes):
    rows = []
    for entry in MANIFEST:
        result, seconds = outcomes[entry["file"]]
        assert seconds < DEADLINE_S
        got = outcome_name(result)
        detail = (
            f"{result.format} {result.mode} {result.orig_width}x{result.orig_height} -> {result.width}x{result.height}"
            if isinstance(result, DecodedImage)
            else result.message[:70]
        )
        rows.append((entry["file"], EXPECTED.get(entry["file"], "ok"), got, f"{1000 * seconds:7.1f} ms", detail))
    table = "\n".join(f"{f:34} expect {e:18} got {g:18} {t}  {d}" for f, e, g, t, d in rows)
    print("\n" + table)
    wrong = [r for r in rows if r[1] != r[2]]
    assert not wrong, "unexpected outcomes:\n" + "\n".join(map(str, wrong))
    counts = Counter(r[2] for r in rows)
    assert dict(counts) == EXPECTED_COUNTS
    assert set(counts) - {"ok"} <= set(REJECT_REASONS)


def test_decoded_images_are_rgb_within_the_limit_and_match_the_manifest(outcomes):
    for name, (result, _) in outcomes.items():
        if not isinstance(result, DecodedImage):
            continue
        entry = BY_NAME[name]
        im = result.image
        assert im.mode == "RGB", name
        assert im.size == (result.width, result.height), name
        assert max(im.size) <= 1024, name
        assert result.format == entry["fmt"], name
        assert result.mode == entry["mode"], name
        assert result.frames == entry["frames"], name
        assert [result.orig_width, result.orig_height] == entry["transposed_size"], name
        assert im.info.keys() <= {"icc_profile"}, name  # no EXIF/XMP/comment carried along


def test_a_small_max_side_resizes_every_format_and_mode():
    small = decode_all(DecodeLimits(max_side=48))
    for name, (result, _) in small.items():
        assert outcome_name(result) == EXPECTED.get(name, "ok"), name
        if isinstance(result, DecodedImage):
            assert result.image.mode == "RGB" and max(result.image.size) <= 48, name
            w, h = result.orig_width, result.orig_height
            if max(w, h) > 48:  # aspect ratio kept to the pixel
                assert abs(result.width / result.height - w / h) < 2 / min(result.width, result.height) + 1e-9, name
            else:
                assert (result.width, result.height) == (w, h), name


def test_large_images_are_resized_to_max_side(outcomes):
    result = outcomes["itxt_chunks.png"][0]
    assert (result.orig_width, result.orig_height) == (2400, 2000)
    assert (result.width, result.height) == (1024, 853)


def test_exif_orientation_is_applied_like_imageops_exif_transpose(outcomes):
    rotated = [e for e in MANIFEST if e.get("orient") in range(2, 9) and isinstance(outcomes[e["file"]][0], DecodedImage)]
    assert {e["file"] for e in rotated} >= {
        "hopper_orientation_3.jpg", "hopper_orientation_6.jpg", "hopper_orientation_8.jpg",
        "hopper_orientation_6.webp", "orientation_rectangle.jpg", "exif_imagemagick_orientation.png",
        "xmp_tags_orientation.png",  # orientation from XMP, not EXIF
    }
    for entry in rotated:
        result = outcomes[entry["file"]][0]
        assert result.transposed, entry["file"]
        with Image.open(PILLOW_IMAGES / entry["file"]) as im:
            reference = on_white(ImageOps.exif_transpose(im))
        assert result.image.size == reference.size == tuple(entry["transposed_size"]), entry["file"]
        assert np.abs(pixels(result.image) - pixels(reference)).max() <= 1, entry["file"]
    # upright again, the rotated hoppers hash like the upright one
    upright = imagehash.hex_to_hash(BY_NAME["hopper.jpg"]["phash"])
    for name in ("hopper_orientation_3.jpg", "hopper_orientation_6.jpg", "hopper_orientation_8.jpg"):
        hashed = imagehash.hex_to_hash(format(phash_to_unsigned(phash64(outcomes[name][0].image)), "016x"))
        assert hashed - upright <= 2, name
    assert not outcomes["hopper.jpg"][0].transposed
    assert not outcomes["flower.webp"][0].transposed  # Orientation=1


def test_broken_exif_does_not_break_decoding(outcomes):
    for name in ("exif_typeerror.jpg", "invalid-exif.jpg", "hopper_bad_exif.jpg", "multiple_exif.jpg", "exif_gps.jpg"):
        result = outcomes[name][0]
        assert isinstance(result, DecodedImage), name
        assert (result.width, result.height) == tuple(BY_NAME[name]["size"]), name


def test_cmyk_jpeg_converts_to_sensible_rgb(outcomes):
    cmyk, rgb = outcomes["pil_sample_cmyk.jpg"][0], outcomes["pil_sample_rgb.jpg"][0]
    assert cmyk.mode == "CMYK" and cmyk.image.mode == "RGB"
    diff = np.abs(pixels(cmyk.image) - pixels(rgb.image))
    assert diff.mean() < 8 and np.percentile(diff, 99) < 40
    assert format(phash_to_unsigned(phash64(cmyk.image)), "016x") == BY_NAME["pil_sample_cmyk.jpg"]["phash"]


def test_16_bit_grey_is_scaled_by_the_type_range_not_clipped(outcomes):
    result = outcomes["16bit.cropped.tif"][0]
    with Image.open(PILLOW_IMAGES / "16bit.cropped.tif") as im:
        raw = np.asarray(im).astype(np.int64)
        clipped = np.asarray(im.convert("L"))
    assert raw.max() > 255  # Pillow's own I;16 -> L conversion clips this to 255
    assert (clipped == 255).all()
    grey = np.asarray(result.image)[:, :, 0]
    assert (grey == np.asarray(result.image)[:, :, 2]).all()
    assert grey.max() < 255
    assert np.array_equal(grey, np.rint(raw / 257).astype(np.uint8))

    with Image.open(PILLOW_IMAGES / "i_trns.png") as im:  # 16-bit grey with a tRNS key
        raw, key = np.asarray(im).astype(np.int64), im.info["transparency"]
    out = np.asarray(outcomes["i_trns.png"][0].image)
    assert (out[raw == key] == 255).all()
    assert np.array_equal(out[raw != key][:, 0], np.rint(raw[raw != key] / 257).astype(np.uint8))


def test_animations_give_their_first_frame(outcomes):
    first_frame_hash = "b00b4b79fbf10f10"  # the same animation as GIF, animated WebP and APNG
    for name in ("iss634.gif", "iss634.webp", "iss634.apng"):
        result = outcomes[name][0]
        assert result.frames == BY_NAME[name]["frames"] > 1
        assert format(phash_to_unsigned(phash64(result.image)), "016x") == first_frame_hash, name
    for name in ("chi.gif", "dispose_bgnd.gif", "avif_star.avifs", "apng_num_plays.png", "sugarshack.mpo"):
        result = outcomes[name][0]
        assert result.frames == BY_NAME[name]["frames"] > 1, name
        with Image.open(PILLOW_IMAGES / name) as im:
            im.seek(0)
            reference = on_white(im)
        assert np.abs(pixels(result.image) - pixels(reference)).max() <= 1, name


def test_transparency_is_composited_on_white(outcomes):
    with Image.open(PILLOW_IMAGES / "transparent.gif") as im:
        index = np.asarray(im)
        transparent = index == im.info["transparency"]
    assert transparent.any()
    assert (np.asarray(outcomes["transparent.gif"][0].image)[transparent] == 255).all()

    with Image.open(PILLOW_IMAGES / "transparent.png") as im:
        alpha = np.asarray(im.getchannel("A"))
        reference = on_white(im)
    assert (alpha == 0).any()
    out = outcomes["transparent.png"][0].image
    assert (np.asarray(out)[alpha == 0] == 255).all()
    assert np.abs(pixels(out) - pixels(reference)).max() <= 1
    # the same picture as PNG, WebP and GIF now hashes alike
    hashes = {name: imagehash.hex_to_hash(format(phash_to_unsigned(phash64(outcomes[name][0].image)), "016x"))
              for name in ("transparent.png", "transparent.webp", "transparent.gif")}
    assert max(a - b for a in hashes.values() for b in hashes.values()) <= 4

    for name in ("p_trns_single.png", "rgb_trns.png", "l_trns.png", "1_trns.png", "tRNS_null_1x1.png", "icc_profile.png"):
        with Image.open(PILLOW_IMAGES / name) as im:
            reference = on_white(im)
        assert np.abs(pixels(outcomes[name][0].image) - pixels(reference)).max() <= 1, name


def test_tiny_images_decode_and_are_then_filtered_as_too_small(outcomes):
    names = ["tRNS_null_1x1.png", "no_palette.gif", "multiple_exif.jpg", "exif_gps.jpg", "hopper.ico", "orientation_rectangle.jpg"]
    rows = []
    for name in names:
        result = outcomes[name][0]
        assert isinstance(result, DecodedImage), name
        metrics = image_metrics(result.image)
        rows.append({"orig_width": result.orig_width, "orig_height": result.orig_height, **vars(metrics)})
    reasons = visual_reject_reasons(pl.DataFrame(rows)).to_list()
    assert reasons == ["too_small"] * len(names)  # 1x2 is within 1:3..3:1, too small all the same


def test_visual_filters_over_the_64_files(outcomes):
    rows = []
    for name, (result, _) in outcomes.items():
        if isinstance(result, DecodedImage):
            metrics, _ = measure_image(result.image)
            rows.append({"file": name, "orig_width": result.orig_width, "orig_height": result.orig_height, **vars(metrics)})
    frame = pl.DataFrame(rows)
    frame = frame.with_columns(visual_reject_reasons(frame).alias("reason"))
    print("\n" + str(frame.group_by("reason").len().sort("reason", nulls_last=True)))
    assert frame.height == 50
    assert set(frame["reason"].drop_nulls()) <= set(VISUAL_REASONS)
    kept = set(frame.filter(pl.col("reason").is_null())["file"])
    assert "junk_jpeg_header.jpg" in kept  # a real 1024x768 photo
    assert not kept & {"tRNS_null_1x1.png", "hopper.ico", "apng_num_plays.png"}


# --------------------------------------------------------------------------- limits and odd input


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_claiming(width: int, height: int) -> bytes:
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + _chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _chunk(b"IEND", b""))


@pytest.mark.parametrize("side", [8_100, 10_000, 20_000])  # ours only; + Pillow's warning; + Pillow's error
def test_headers_claiming_huge_sizes_are_bombs_before_any_pixel_is_decoded(side):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ImageRejected) as rejected:
            run_with_deadline(lambda: decode_image(png_claiming(side, side), DecodeLimits()), 2.0)
    assert rejected.value.reason == "decompression_bomb"
    assert caught == []


def test_our_pixel_limit_and_frames_times_size():
    hopper = (PILLOW_IMAGES / "hopper.jpg").read_bytes()
    with pytest.raises(ImageRejected) as rejected:
        decode_image(hopper, DecodeLimits(max_pixels=128 * 128 - 1))
    assert rejected.value.reason == "decompression_bomb"
    assert decode_image(hopper, DecodeLimits(max_pixels=128 * 128)).width == 128

    animation = (PILLOW_IMAGES / "iss634.webp").read_bytes()  # 42 frames of 245x245
    with pytest.raises(ImageRejected) as rejected:
        decode_image(animation, DecodeLimits(max_pixels=1_000_000))
    assert rejected.value.reason == "decompression_bomb" and "frames" in rejected.value.message
    assert decode_image(animation, DecodeLimits(max_pixels=42 * 245 * 245)).frames == 42

    frames = [Image.new("L", (100, 100), v) for v in range(0, 250, 25)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    with pytest.raises(ImageRejected) as rejected:
        decode_image(buffer.getvalue(), DecodeLimits(max_pixels=99_999))
    assert rejected.value.reason == "decompression_bomb"
    assert decode_image(buffer.getvalue(), DecodeLimits(max_pixels=100_000)).frames == 10


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "not_an_image"),
        (b"<!DOCTYPE html><html><body>404 Not Found</body></html>", "not_an_image"),
        (bytes(range(256)) * 8, "not_an_image"),
        (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "not_an_image"),  # never handed to Ghostscript
        (b"<svg xmlns='http://www.w3.org/2000/svg' width='10' height='10'/>", "not_an_image"),
    ],
)
def test_non_images_are_not_an_image(data, reason):
    with pytest.raises(ImageRejected) as rejected:
        decode_image(data, DecodeLimits())
    assert rejected.value.reason == reason


def test_cut_downloads_are_truncated_or_corrupt():
    photo = COCO_PHOTOS[0].read_bytes()
    for cut in (len(photo) // 2, len(photo) - 100, 2000):
        with pytest.raises(ImageRejected) as rejected:
            decode_image(photo[:cut], DecodeLimits())
        assert rejected.value.reason in ("truncated_image", "corrupt_image")
    for cut in (2, 20):
        with pytest.raises(ImageRejected) as rejected:
            decode_image(photo[:cut], DecodeLimits())
        assert rejected.value.reason in ("not_an_image", "truncated_image", "corrupt_image")


def test_large_jpegs_decode_at_a_reduced_scale_never_below_max_side(monkeypatch):
    from PIL import JpegImagePlugin

    photo = Image.open(COCO_PHOTOS[5]).convert("RGB")
    drafts = []
    real_draft = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        result = real_draft(self, mode, size)
        drafts.append((size, self.size))
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    cases = [
        ((8200, 5445), (1024, 680), (1025, 681)),  # 8x -> DCT scale 1/8, still >= the stored size
        ((5000, 3320), (1024, 680), (1250, 830)),  # 4.9x -> 1/4
        ((4000, 2656), (1024, 680), (2000, 1328)),  # 3.9x -> 1/2
        ((1800, 1195), (1024, 680), (1800, 1195)),  # under 2x: full decode
    ]
    for size, stored, decoded_at in cases:
        buffer = io.BytesIO()
        photo.resize(size, Image.Resampling.BILINEAR).save(buffer, "JPEG", quality=90)
        drafts.clear()
        result = decode_image(buffer.getvalue(), DecodeLimits())
        assert (result.orig_width, result.orig_height) == size
        assert (result.width, result.height) == stored
        assert drafts == [(stored, decoded_at)]
        full = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB").resize(stored, Image.Resampling.LANCZOS)
        mse = float(((pixels(result.image).astype(np.float64) - pixels(full)) ** 2).mean())
        assert 10 * math.log10(255**2 / max(mse, 1e-9)) > 30, size  # PSNR against a full decode


def test_encode_jpeg_is_a_clean_rgb_baseline_jpeg(outcomes):
    result = outcomes["exif_gps.jpg"][0]
    with Image.open(PILLOW_IMAGES / "exif_gps.jpg") as im:
        assert im.getexif().get_ifd(0x8825)  # the source carries GPS data
    data = encode_jpeg(result.image, 90)
    with Image.open(io.BytesIO(data)) as back:
        assert back.format == "JPEG" and back.mode == "RGB" and back.size == result.image.size
        assert "exif" not in back.info and not back.getexif()
        assert not back.info.get("progressive") and not back.info.get("progression")
    assert b"Exif\0\0" not in data and b"\xff\xfe" not in data  # no EXIF, no comment
    grey = encode_jpeg(Image.new("L", (20, 10), 128))
    assert Image.open(io.BytesIO(grey)).mode == "RGB"
    # an RGB colour profile of the source travels with the stored image
    icc = outcomes["pil_sample_rgb.jpg"][0]
    assert Image.open(io.BytesIO(encode_jpeg(icc.image))).info.get("icc_profile") == icc.image.info["icc_profile"]


def test_decoding_leaves_global_pillow_and_warning_state_alone(outcomes):
    before = (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES, list(warnings.filters))
    decode_all(DecodeLimits(max_pixels=1_000_000))
    for side in (8_100, 10_000, 20_000):
        with pytest.raises(ImageRejected):
            decode_image(png_claiming(side, side))
    assert (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES, list(warnings.filters)) == before
    assert Image.MAX_IMAGE_PIXELS == 89_478_485


# --------------------------------------------------------------------------- measurements


def reflect101(i: int, n: int) -> int:
    """OpenCV's borderInterpolate for BORDER_REFLECT_101 (gfedcb|abcdefgh|gfedcba)."""
    if n == 1:
        return 0
    while not 0 <= i < n:
        i = -i if i < 0 else 2 * n - i - 2
    return i


def reference_laplacian_var(grey: np.ndarray) -> float:
    h, w = grey.shape
    rows = [reflect101(i, h) for i in range(-1, h + 1)]
    cols = [reflect101(j, w) for j in range(-1, w + 1)]
    p = grey.astype(np.float64)[np.ix_(rows, cols)]
    lap = p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:] - 4 * p[1:-1, 1:-1]
    return float(lap.var())


def test_the_reference_laplacian_is_the_opencv_kernel():
    rng = np.random.default_rng(1)
    grey = rng.integers(0, 256, (5, 7)).astype(np.float64)
    kernel = [[0, 1, 0], [1, -4, 1], [0, 1, 0]]
    h, w = grey.shape
    lap = [[sum(kernel[di + 1][dj + 1] * grey[reflect101(i + di, h), reflect101(j + dj, w)]
                for di in (-1, 0, 1) for dj in (-1, 0, 1)) for j in range(w)] for i in range(h)]
    assert math.isclose(reference_laplacian_var(grey), float(np.var(lap)), rel_tol=1e-12)


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (2, 2), (3, 5), (64, 64), (480, 640), (511, 1024)])
def test_laplacian_variance_matches_the_reference(shape):
    rng = np.random.default_rng(sum(shape))
    for grey in (rng.integers(0, 256, shape, dtype=np.uint8), np.zeros(shape, np.uint8),
                 (np.indices(shape).sum(axis=0) * 37 % 256).astype(np.uint8)):
        assert math.isclose(laplacian_variance(grey), reference_laplacian_var(grey), rel_tol=1e-9, abs_tol=1e-9)


def test_metrics_of_a_real_photo_match_plain_numpy():
    image = decode_image(COCO_PHOTOS[1].read_bytes()).image
    grey = np.asarray(image.convert("L"))
    metrics = image_metrics(image)
    assert math.isclose(metrics.laplacian_var, reference_laplacian_var(grey), rel_tol=1e-9)
    assert math.isclose(metrics.pixel_std, float(grey.std()), rel_tol=1e-9)
    p = np.bincount(grey.ravel(), minlength=256) / grey.size
    p = p[p > 0]
    assert math.isclose(metrics.entropy, float(-(p * np.log2(p)).sum()), rel_tol=1e-9)
    assert image_metrics(image.convert("L")) == metrics  # the grey image gives the same metrics


def test_blank_image_has_no_spread_no_entropy_no_edges():
    for colour in ((0, 0, 0), (255, 255, 255), (12, 200, 99)):
        metrics = image_metrics(Image.new("RGB", (300, 200), colour))
        assert metrics == ImageMetrics(pixel_std=0.0, laplacian_var=0.0, entropy=0.0)


def test_uniform_noise_has_eight_bits_of_entropy():
    noise = np.random.default_rng(7).integers(0, 256, (1024, 1024), dtype=np.uint8)
    metrics = image_metrics(Image.fromarray(noise, "L"))
    assert 7.99 < metrics.entropy <= 8.0
    assert abs(metrics.pixel_std - 256 / math.sqrt(12)) < 0.5


def test_blurring_a_photo_collapses_the_laplacian_variance():
    for path in COCO_PHOTOS[:4]:
        image = decode_image(path.read_bytes()).image
        sharp = image_metrics(image)
        blurred = image_metrics(image.filter(ImageFilter.GaussianBlur(3)))
        assert blurred.laplacian_var < 0.1 * sharp.laplacian_var, path.name
        assert blurred.pixel_std > 0.7 * sharp.pixel_std  # blur keeps the contrast, loses the edges


def test_phash64_is_imagehash_phash_as_signed_int64(outcomes):
    for name in ("hopper.jpg", "hopper.png", "hopper.webp", "hopper_gray.jpg", "junk_jpeg_header.jpg", "flower.webp",
                 "sugarshack.mpo", "avif_hopper.avif", "16bit.cropped.tif"):
        image = outcomes[name][0].image
        value = phash64(image)
        assert -(2**63) <= value < 2**63
        assert format(phash_to_unsigned(value), "016x") == str(imagehash.phash(image)), name
        assert phash64(grayscale(image)) == value  # imagehash converts to L itself
        assert measure_image(image) == (image_metrics(image), value)
    for name in ("hopper.jpg", "hopper.png", "hopper.webp", "hopper.gif", "hopper.bmp", "junk_jpeg_header.jpg"):
        assert format(phash_to_unsigned(phash64(outcomes[name][0].image)), "016x") == BY_NAME[name]["phash"], name
    for unsigned in (0, 1, 2**63 - 1, 2**63, 0x8C977C0983CE9E8D, 2**64 - 1):
        signed = phash_to_signed(unsigned)
        assert -(2**63) <= signed < 2**63 and phash_to_unsigned(signed) == unsigned
    assert phash_to_signed(2**64 - 1) == -1
    assert pl.Series([phash_to_signed(0x8C977C0983CE9E8D)], dtype=pl.Int64).item() < 0


# --------------------------------------------------------------------------- visual filters


def metric_row(**overrides) -> dict:
    row = {"orig_width": 640, "orig_height": 480, "pixel_std": 50.0, "laplacian_var": 5000.0, "entropy": 7.0}
    row.update(overrides)
    return row


def test_each_visual_reason_is_triggered_by_its_metric():
    cases = [
        (metric_row(), None),
        (metric_row(orig_width=1000, orig_height=301), "aspect_ratio"),
        (metric_row(orig_width=301, orig_height=1000), "aspect_ratio"),
        (metric_row(orig_width=900, orig_height=300), None),  # exactly 3:1 is kept
        (metric_row(orig_width=300, orig_height=900), None),  # exactly 1:3 is kept
        (metric_row(orig_width=100, orig_height=200), "too_small"),
        (metric_row(orig_width=101, orig_height=101), None),  # the paper: shortest edge > 100 px
        (metric_row(pixel_std=1.99), "low_pixel_std"),
        (metric_row(pixel_std=2.0), None),
        (metric_row(laplacian_var=999.9), "blurry"),
        (metric_row(laplacian_var=1000.0), None),
        (metric_row(entropy=2.99), "low_entropy"),
        (metric_row(entropy=3.0), None),
        # the first failing check names the row
        (metric_row(orig_width=50, orig_height=400, pixel_std=0, laplacian_var=0, entropy=0), "aspect_ratio"),
        (metric_row(orig_width=50, orig_height=50, pixel_std=0, laplacian_var=0, entropy=0), "too_small"),
        (metric_row(pixel_std=0, laplacian_var=0, entropy=0), "low_pixel_std"),
        (metric_row(laplacian_var=0, entropy=0), "blurry"),
    ]
    frame = pl.DataFrame([row for row, _ in cases])
    reasons = visual_reject_reasons(frame, VisualFilterConfig())
    assert reasons.dtype == pl.String
    assert reasons.to_list() == [reason for _, reason in cases]
    relaxed = VisualFilterConfig(min_laplacian_var=0, min_short_edge=1)
    assert visual_reject_reasons(pl.DataFrame([metric_row(laplacian_var=5.0, orig_width=20, orig_height=20)]), relaxed).to_list() == [None]
    assert visual_reject_reasons(frame.clear()).to_list() == []


def test_defaults_are_the_settings_defaults():
    settings = Settings()
    assert VisualFilterConfig.from_settings(settings) == VisualFilterConfig()
    assert VisualFilterConfig() == VisualFilterConfig(1 / 3, 3.0, 101, 2.0, 1000.0, 3.0)
    limits = DecodeLimits.from_settings(settings)
    assert (limits.max_pixels, limits.max_side, limits.jpeg_quality) == (64_000_000, 1024, 90)
    assert limits == DecodeLimits()


class FakeNsfw:
    def __init__(self, model_path):
        self.model_path = model_path

    def unsafe_scores_from_pixels(self, images):
        return [1.0 if im.getpixel((0, 0)) == (255, 0, 0) else 0.0 for im in images]

    def unsafe_scores_from_embeddings(self, embeddings):
        return [float(v) for v in np.asarray(embeddings)[:, 0]]


def fake_nsfw(model_path):
    return FakeNsfw(model_path)


def not_a_classifier(model_path):
    return object()


def test_image_safety_classifier_is_pluggable():
    classifier = load_image_classifier(f"{__name__}:fake_nsfw", "/models/nsfw")
    assert isinstance(classifier, ImageSafetyClassifier) and classifier.model_path == "/models/nsfw"
    assert has_embedding_scores(classifier) and not has_embedding_scores(object())
    scores = classifier.unsafe_scores_from_pixels([Image.new("RGB", (4, 4), (255, 0, 0)), Image.new("RGB", (4, 4))])
    assert safety_reject_reasons(scores, 0.5).to_list() == ["unsafe_image", None]
    assert safety_reject_reasons(classifier.unsafe_scores_from_embeddings(np.array([[0.7, 0], [0.2, 0]])), 0.5).to_list() == [
        "unsafe_image", None]
    with pytest.raises(ValueError):
        load_image_classifier("no_colon_here", None)
    with pytest.raises(TypeError):
        load_image_classifier(f"{__name__}:not_a_classifier", None)
    assert Settings().image_safety_classifier is None  # none by default


def test_module_has_no_dagster_dependency():
    for module in (decode_module, __import__("danqing_assets.curation.images.visual_filters", fromlist=["x"])):
        assert "dagster" not in Path(module.__file__).read_text()
