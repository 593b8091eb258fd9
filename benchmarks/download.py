"""Image download throughput beside img2dataset, same local server, same URLs, same process count.

    .venv/bin/python benchmarks/download.py [--images 2000] [--img2dataset PATH] [--json out.json]

Serves ``--images`` generated JPEGs (photo-like, 400–1200 px) from a threaded HTTP
server on 127.0.0.1 and downloads them twice, each in one process:
- ours: ``download_chunk`` (async download, SSRF guard, robots.txt, decode,
  resize to 1024, measurements, pHash, JPEG re-encode, WebDataset shard);
- img2dataset (install it in its own venv, it pins old packages:
  ``python3 -m venv /tmp/i2d && /tmp/i2d/bin/pip install img2dataset``), resizing to
  1024 (keep_ratio) into webdataset, 64 threads.
Both share the server on the same 2 cores, so the figures are a ratio, not a limit.
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from danqing_assets.curation.images.decode import DecodeLimits  # noqa: E402
from danqing_assets.curation.images.download import DownloadConfig  # noqa: E402
from danqing_assets.curation.images.ingest import download_chunk  # noqa: E402
from danqing_assets.curation.images.net_guard import NetworkPolicy  # noqa: E402
from danqing_assets.resources.shards import ShardWriter  # noqa: E402
from danqing_assets.resources.storage import LocalObjectStore  # noqa: E402
from danqing_assets.sample_crawl import SampleCrawlServer  # noqa: E402


def make_images(root: Path, n: int) -> list[str]:
    rng = np.random.default_rng(0)
    (root / "img").mkdir(parents=True)
    base = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    names = []
    for i in range(n):
        w, h = int(rng.integers(400, 1200)), int(rng.integers(400, 1200))
        tile = np.roll(base, i, axis=0)
        img = Image.fromarray(tile, "RGB").resize((w, h), Image.Resampling.BILINEAR)
        grain = rng.integers(0, 40, size=(h, w, 1), dtype=np.uint8)
        img = Image.fromarray(np.clip(np.asarray(img, dtype=np.int16) + grain - 20, 0, 255).astype(np.uint8))
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=85)
        (root / "img" / f"{i:06d}.jpg").write_bytes(buf.getvalue())
        names.append(f"img/{i:06d}.jpg")
    return names


def run_ours(urls: list[str], port: int, out: Path) -> float:
    config = DownloadConfig(concurrency=64, per_host_concurrency=64, policy=NetworkPolicy.from_strings(f"127.0.0.1:{port}"))
    store = LocalObjectStore(out)
    started = time.perf_counter()
    with ShardWriter(store, "bench.tar") as shard:
        outcome = download_chunk(urls, config, DecodeLimits(), shard, "bench.tar", workers=os.cpu_count() or 1)
        shard.commit()
    seconds = time.perf_counter() - started
    assert outcome.counts["ok"] == len(urls), outcome.counts
    return seconds


def run_img2dataset(binary: str, urls: list[str], out: Path) -> float:
    url_list = out / "urls.txt"
    out.mkdir(parents=True)
    url_list.write_text("\n".join(urls))
    started = time.perf_counter()
    subprocess.run([binary, "--url_list", str(url_list), "--output_folder", str(out / "data"), "--processes_count", "1",
                    "--thread_count", "64", "--image_size", "1024", "--resize_mode", "keep_ratio",
                    "--resize_only_if_bigger", "True", "--output_format", "webdataset", "--number_sample_per_shard", str(len(urls)),
                    "--enable_wandb", "False"], check=True, capture_output=True,
                   env={**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"})
    seconds = time.perf_counter() - started
    stats = json.loads(next((out / "data").glob("*_stats.json")).read_text())
    assert stats["successes"] == len(urls), stats
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--img2dataset", default=shutil.which("img2dataset") or "/tmp/i2d/bin/img2dataset")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "www"
        names = make_images(root, args.images)
        with SampleCrawlServer(root) as server:
            urls = [f"http://127.0.0.1:{server.port}/{n}" for n in names]
            ours = run_ours(urls, server.port, Path(tmp) / "ours")
            theirs = run_img2dataset(args.img2dataset, urls, Path(tmp) / "i2d") if Path(args.img2dataset).exists() else None
    print(f"{args.images:,} images (400–1200 px JPEG) from 127.0.0.1, one process each")
    print(f"danqing_assets download_chunk: {args.images / ours:8.1f} images/s ({ours:.1f} s)")
    if theirs is not None:
        print(f"img2dataset:                   {args.images / theirs:8.1f} images/s ({theirs:.1f} s)")
        print(f"ratio ours / img2dataset:      {theirs / ours:8.2f}")
    else:
        print("img2dataset not found: install it in its own venv (see the docstring)")
    if args.json:
        args.json.write_text(json.dumps({"images": args.images, "ours_s": ours, "img2dataset_s": theirs}, indent=2))


if __name__ == "__main__":
    main()
