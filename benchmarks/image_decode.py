"""Image stage throughput: our decode + filters' measurements + pHash + re-encode, beside bare Pillow decoding.

    .venv/bin/python benchmarks/image_decode.py [--images 2000] [--pool 400] [--seed 0] [--json out.json]

Images: JPEGs made from the 10 real COCO photos in ../shared/realworld/coco-cn/sample_images
by random crops, resizes to a longest side of 300-1600 px (the web's usual range; the
photos are 640 px, so the larger ones are upscaled), random quality 60-95, chroma
subsampling 4:2:0 (most) or 4:4:4, a share progressive, a share with an EXIF
orientation, written to a temporary directory; ``--images`` reads cycle through a pool of
``--pool`` of them, one file at a time (as downloads arrive), so memory does not grow with
the count. One process pinned to one core (BLAS and OpenMP one thread).

Baseline: ``Image.open(BytesIO(data)).convert("RGB")`` and ``load()`` — what the
cheapest possible "decode" costs. Ours: :func:`prepare_image`, exactly what the
download step does per image — :func:`decode_image` (JPEG draft, EXIF orientation,
RGB, resize to 1024 px), the filters' measurements (grey std, Laplacian variance,
entropy), :func:`phash64`, :func:`encode_jpeg` (quality 90) and the sha256 of the
bytes. Not part of the test suite.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REALWORLD, Clock, PeakRSS, comparison, pin_one_core, stage_result, target  # noqa: E402

from PIL import Image  # noqa: E402

from danqing_assets.curation.images.decode import (  # noqa: E402
    DecodeLimits,
    decode_image,
    encode_jpeg,
    grayscale,
    image_metrics,
    phash64,
)
from danqing_assets.curation.images.download import DownloadResult  # noqa: E402
from danqing_assets.curation.images.ingest import prepare_image  # noqa: E402

PHOTOS = REALWORLD / "coco-cn" / "sample_images"


def make_jpegs(directory: Path, count: int, seed: int) -> list[Path]:
    rng = random.Random(seed)
    sources = [Image.open(p).convert("RGB") for p in sorted(PHOTOS.glob("*.jpg"))]
    paths = []
    for i in range(count):
        src = sources[i % len(sources)]
        w, h = src.size
        cw, ch = rng.randint(w // 2, w), rng.randint(h // 2, h)
        x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
        crop = src.crop((x, y, x + cw, y + ch))
        if rng.random() < 0.25:  # portrait shots
            crop = crop.transpose(Image.Transpose.ROTATE_90)
        long_side = rng.randint(300, 1600)
        scale = long_side / max(crop.size)
        size = (max(1, round(crop.width * scale)), max(1, round(crop.height * scale)))
        img = crop.resize(size, Image.Resampling.BICUBIC)
        options = {
            "quality": rng.randint(60, 95),
            "subsampling": 0 if rng.random() < 0.2 else 2,
            "progressive": rng.random() < 0.15,
        }
        if rng.random() < 0.1:
            exif = Image.Exif()
            exif[0x0112] = rng.choice([3, 6, 8])
            options["exif"] = exif.tobytes()
        path = directory / f"{i:05d}.jpg"
        img.save(path, "JPEG", **options)
        paths.append(path)
    return paths


def bare_decode(paths: list[Path]) -> int:
    pixels = 0
    for path in paths:
        im = Image.open(io.BytesIO(path.read_bytes())).convert("RGB")
        im.load()
        pixels += im.width * im.height
    return pixels


def ours(paths: list[Path], limits: DecodeLimits) -> int:
    """What ``download_chunk`` does to every downloaded image: decode, resize, measure, pHash, re-encode."""
    stored = 0
    for path in paths:
        prepared = prepare_image(DownloadResult(url=f"http://img.example.cn/{path.name}", ok=True, data=path.read_bytes()),
                                 limits)
        stored += len(prepared.jpeg)
    return stored


def step_shares(paths: list[Path], limits: DecodeLimits) -> dict[str, float]:
    """Milliseconds per image of each step (decode, metrics, pHash, encode), for the profile."""
    steps = {"decode": 0.0, "metrics": 0.0, "phash": 0.0, "encode": 0.0}
    clock = time.perf_counter
    for path in paths:
        data = path.read_bytes()
        t0 = clock()
        decoded = decode_image(data, limits)
        t1 = clock()
        grey = grayscale(decoded.image)
        image_metrics(grey)
        t2 = clock()
        phash64(grey)
        t3 = clock()
        encode_jpeg(decoded.image, limits.jpeg_quality, optimize=False)
        t4 = clock()
        for name, s in zip(steps, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            steps[name] += s
    return {k: 1000 * v / len(paths) for k, v in steps.items()}


def run(size: int = 2000, *, pool: int = 400, seed: int = 0, rounds: int = 2, **_: object) -> dict:
    """``size`` images read one at a time from disk, cycling a pool of ``pool`` generated JPEGs."""
    pin_one_core()
    with tempfile.TemporaryDirectory(prefix="danqing-image-bench-") as tmp:
        distinct = make_jpegs(Path(tmp), min(size, pool), seed)
        paths = [distinct[i % len(distinct)] for i in range(size)]
        limits = DecodeLimits()
        ours(distinct[:20], limits)  # imports (scipy for the DCT) and caches, untimed
        bare_decode(distinct[:20])
        bare_times, our_times, bare_cpu, our_cpu = [], [], [], []
        with PeakRSS() as peak:
            for _ in range(max(1, rounds)):  # alternating rounds, the best of each is kept
                with Clock() as clock:
                    stored = ours(paths, limits)
                our_times.append(clock.wall)
                our_cpu.append(clock.cpu)
                with Clock() as clock:
                    bare_decode(paths)
                bare_times.append(clock.wall)
                bare_cpu.append(clock.cpu)
        shares = step_shares(distinct[:200], limits)
        sizes = [Image.open(p).size for p in distinct]
        read_mb = sum(p.stat().st_size for p in paths) / 1e6
    seconds, bare_s = min(our_times), min(bare_times)
    rate = size / seconds
    bare = comparison("bare Pillow open + convert(RGB) + load", size, bare_s, rate, mb=read_mb,
                      cpu_seconds=min(bare_cpu), ours_cpu_rate=size / min(our_cpu))
    return stage_result(
        "image", unit="images", items=size, seconds=seconds, cpu_seconds=min(our_cpu), mb=read_mb, peak=peak,
        comparisons=[bare], targets=[target("≥ 75% of bare Pillow decode (per CPU-s)", bare["ratio_cpu"], 0.75)],
        details={"distinct_images": len(distinct), "max_side": limits.max_side,
                 "longest_side_px": [min(max(s) for s in sizes), max(max(s) for s in sizes)],
                 "median_longest_side_px": statistics.median(max(s) for s in sizes),
                 "over_max_side": sum(1 for s in sizes if max(s) > limits.max_side),
                 "ms_per_image_per_step": shares, "stored_over_read_bytes": stored / (read_mb * 1e6),
                 "ours_seconds_rounds": our_times, "bare_seconds_rounds": bare_times},
        notes=["ours = prepare_image (decode with draft + EXIF + resize to 1024, metrics, pHash, JPEG re-encode, sha256)"],
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--pool", type=int, default=400, help="distinct generated JPEGs, cycled")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=3, help="alternating timed rounds; the best of each is kept")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    r = run(args.images, pool=args.pool, seed=args.seed, rounds=args.rounds)
    d, bare = r["details"], r["comparisons"][0]
    print(f"{r['items']:,} JPEGs ({d['distinct_images']} distinct), longest side {d['longest_side_px'][0]}-"
          f"{d['longest_side_px'][1]} px (median {d['median_longest_side_px']:.0f}), {r['mb']:.1f} MB, "
          f"{d['over_max_side']} distinct over {d['max_side']} px; one core")
    print(f"bare Pillow open+convert(RGB)+load:        {bare['items_per_s']:8.1f} images/s  ({bare['seconds']:.2f} s)")
    print(f"decode+metrics+phash+encode (ours):       {r['items_per_s']:8.1f} images/s  ({r['seconds']:.2f} s, "
          f"peak RSS {r['peak_rss_mb']:.0f} MB)")
    print(f"ratio ours / bare:                        {bare['ratio']:8.2f}")
    print("ms per image per step: " + ", ".join(f"{k} {v:.2f}" for k, v in d["ms_per_image_per_step"].items()))
    print(f"stored JPEG bytes / downloaded bytes:     {d['stored_over_read_bytes']:8.2f}")
    if args.json:
        args.json.write_text(json.dumps(r, indent=2))


if __name__ == "__main__":
    main()
