"""Image stage throughput: our decode + filters' measurements + pHash + re-encode, beside bare Pillow decoding.

    .venv/bin/python benchmarks/image_decode.py [--images 2000] [--seed 0] [--json out.json]

Images: JPEGs made from the 10 real COCO photos in ../shared/realworld/coco-cn/sample_images
by random crops, resizes to a longest side of 300-1600 px (the web's usual range; the
photos are 640 px, so the larger ones are upscaled), random quality 60-95, chroma
subsampling 4:2:0 (most) or 4:4:4, a share progressive, a share with an EXIF
orientation, written to a temporary directory and read back into memory, so neither
side pays for disk. One process, one core (BLAS and OpenMP pinned to one thread).

Baseline: ``Image.open(BytesIO(data)).convert("RGB")`` and ``load()`` — what the
cheapest possible "decode" costs. Ours: :func:`decode_image` (JPEG draft, EXIF
orientation, RGB, resize to 1024 px), :func:`image_metrics` (grey std, Laplacian
variance, entropy), :func:`phash64` and :func:`encode_jpeg` (quality 90, optimised)
of the stored image. Not part of the test suite.
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from PIL import Image  # noqa: E402

from danqing_assets.curation.images.decode import (  # noqa: E402
    DecodeLimits,
    decode_image,
    encode_jpeg,
    grayscale,
    image_metrics,
    phash64,
)

PHOTOS = REPO.parent / "shared" / "realworld" / "coco-cn" / "sample_images"


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


def bare_decode(blobs: list[bytes], per_image: list[float]) -> float:
    clock = time.perf_counter
    started = clock()
    for i, data in enumerate(blobs):
        t0 = clock()
        im = Image.open(io.BytesIO(data)).convert("RGB")
        im.load()
        per_image[i] = min(per_image[i], clock() - t0)
    return clock() - started


def our_pipeline(blobs: list[bytes], limits: DecodeLimits, per_image: list[float]) -> tuple[float, dict[str, float], int]:
    steps = {"decode": 0.0, "metrics": 0.0, "phash": 0.0, "encode": 0.0}
    out_bytes = 0
    clock = time.perf_counter
    started = clock()
    for i, data in enumerate(blobs):
        t0 = clock()
        decoded = decode_image(data, limits)
        t1 = clock()
        grey = grayscale(decoded.image)
        image_metrics(grey)
        t2 = clock()
        phash64(grey)
        t3 = clock()
        out_bytes += len(encode_jpeg(decoded.image, limits.jpeg_quality))
        t4 = clock()
        steps["decode"] += t1 - t0
        steps["metrics"] += t2 - t1
        steps["phash"] += t3 - t2
        steps["encode"] += t4 - t3
        per_image[i] = min(per_image[i], t4 - t0)
    return clock() - started, steps, out_bytes


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=3, help="alternating timed rounds; the best of each is kept")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

    with tempfile.TemporaryDirectory(prefix="danqing-image-bench-") as tmp:
        paths = make_jpegs(Path(tmp), args.images, args.seed)
        blobs = [p.read_bytes() for p in paths]
    sizes = [Image.open(io.BytesIO(b)).size for b in blobs]
    limits = DecodeLimits()
    bare_each, our_each = [float("inf")] * len(blobs), [float("inf")] * len(blobs)
    our_pipeline(blobs[:20], limits, our_each[:20])  # imports (scipy for the DCT) and caches, untimed
    bare_decode(blobs[:20], bare_each[:20])

    bare_times, our_runs = [], []
    for _ in range(args.rounds):
        bare_times.append(bare_decode(blobs, bare_each))
        our_runs.append(our_pipeline(blobs, limits, our_each))
    bare_s = min(bare_times)
    ours_s, steps, out_bytes = min(our_runs, key=lambda r: r[0])

    n = len(blobs)
    bare_rate, our_rate = n / bare_s, n / ours_s
    megapixels = sum(w * h for w, h in sizes) / 1e6
    over = sum(1 for w, h in sizes if max(w, h) > limits.max_side)
    print(f"{n:,} JPEGs, longest side {min(max(s) for s in sizes)}-{max(max(s) for s in sizes)} px "
          f"(median {statistics.median(max(s) for s in sizes):.0f}), {megapixels:.0f} Mpx, "
          f"{sum(map(len, blobs)) / 1e6:.1f} MB, {over:,} over {limits.max_side} px; one core")
    print(f"bare Pillow open+convert(RGB)+load:        {bare_rate:8.1f} images/s  ({bare_s:.2f} s)")
    print(f"decode+metrics+phash+encode (ours):       {our_rate:8.1f} images/s  ({ours_s:.2f} s)")
    print(f"ratio ours / bare:                        {our_rate / bare_rate:8.2f}")
    print(f"decode alone / bare:                      {bare_s / steps['decode']:8.2f}")
    classes = {}
    for label, keep in ((f"<= {limits.max_side} px", lambda s: max(s) <= limits.max_side),
                        (f"> {limits.max_side} px", lambda s: max(s) > limits.max_side)):
        idx = [i for i, s in enumerate(sizes) if keep(s)]
        if idx:
            b, o = sum(bare_each[i] for i in idx), sum(our_each[i] for i in idx)
            classes[label] = {"images": len(idx), "bare_ms": 1000 * b / len(idx), "ours_ms": 1000 * o / len(idx), "ratio": b / o}
            print(f"  {label:<12} {len(idx):5,} images: bare {1000 * b / len(idx):6.2f} ms, ours {1000 * o / len(idx):6.2f} ms, "
                  f"ratio {b / o:.2f} (best per image over rounds)")
    print("share of time per step:")
    total = sum(steps.values())
    for name, seconds in steps.items():
        print(f"  {name:<10} {100 * seconds / total:5.1f} %  {1000 * seconds / n:6.2f} ms/image")
    print(f"stored JPEG bytes / downloaded bytes:     {out_bytes / sum(map(len, blobs)):8.2f}")
    if args.json:
        args.json.write_text(json.dumps({
            "images": n, "megapixels": megapixels, "over_max_side": over,
            "bare_images_per_s": bare_rate, "ours_images_per_s": our_rate, "ratio": our_rate / bare_rate,
            "seconds_per_step": steps, "ms_per_image_per_step": {k: 1000 * v / n for k, v in steps.items()},
            "by_size": classes, "resample": limits.resample.name,
            "bare_seconds_rounds": bare_times, "ours_seconds_rounds": [r[0] for r in our_runs],
        }, indent=2))


if __name__ == "__main__":
    main()
