"""Image download throughput beside img2dataset, same local server, same URLs, same process count.

    .venv/bin/python benchmarks/download.py [--images 2000] [--chunk 500] [--img2dataset PATH] [--json out.json]

Serves ``--images`` URLs of generated JPEGs (photo-like, 400–1200 px; a pool of
``--pool`` distinct files, hard-linked under distinct names) from Python's threaded
``http.server`` in its own process on 127.0.0.1, pinned to the other cores, and
downloads them twice, each in one process pinned to one core:
- ours: ``download_chunk`` per chunk of ``--chunk`` URLs (async download, SSRF
  guard, robots.txt, decode, resize to 1024, measurements, pHash, JPEG re-encode,
  one WebDataset shard per chunk), as one ``downloaded_images`` step does;
- img2dataset 1.47.0, resizing to 1024 (keep_ratio, only if bigger) into
  webdataset shards of ``--chunk`` samples, 1 process, 64 threads. It pins old
  packages, so it runs from its own venv, ``benchmarks/.venv-img2dataset``, made on
  first use (``--img2dataset PATH`` names another binary). Its start-up (imports)
  is measured on a 10-URL run and subtracted, so short runs do not flatter us.
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Clock, PeakRSS, comparison, other_cores, pin_one_core, stage_result, target  # noqa: E402

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from danqing_assets.curation.images.decode import DecodeLimits  # noqa: E402
from danqing_assets.curation.images.download import DownloadConfig  # noqa: E402
from danqing_assets.curation.images.ingest import download_chunk  # noqa: E402
from danqing_assets.curation.images.net_guard import NetworkPolicy  # noqa: E402
from danqing_assets.resources.shards import ShardWriter  # noqa: E402
from danqing_assets.resources.storage import LocalObjectStore  # noqa: E402

HERE = Path(__file__).resolve().parent
IMG2DATASET_VENV = HERE / ".venv-img2dataset"
IMG2DATASET_VERSION = "1.47.0"


def make_images(root: Path, n: int, pool: int = 400) -> list[str]:
    rng = np.random.default_rng(0)
    (root / "img").mkdir(parents=True)
    base = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    distinct = []
    for i in range(min(n, pool)):
        w, h = int(rng.integers(400, 1200)), int(rng.integers(400, 1200))
        tile = np.roll(base, i, axis=0)
        img = Image.fromarray(tile, "RGB").resize((w, h), Image.Resampling.BILINEAR)
        grain = rng.integers(0, 40, size=(h, w, 1), dtype=np.uint8)
        img = Image.fromarray(np.clip(np.asarray(img, dtype=np.int16) + grain - 20, 0, 255).astype(np.uint8))
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=85)
        path = root / "pool" / f"{i:06d}.jpg"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(buf.getvalue())
        distinct.append(path)
    names = []
    for i in range(n):
        os.link(distinct[i % len(distinct)], root / "img" / f"{i:07d}.jpg")  # distinct URLs, shared bytes
        names.append(f"img/{i:07d}.jpg")
    return names


class StaticServer:
    """``python -m http.server`` (threaded) in its own process group on 127.0.0.1; stopped by its PID."""

    def __init__(self, root: Path, cores: set[int] | None) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.proc = subprocess.Popen([sys.executable, "-m", "http.server", str(self.port), "--bind", "127.0.0.1",
                                      "--directory", str(root)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        if cores:
            os.sched_setaffinity(self.proc.pid, cores)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError("http.server did not start")
                time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)


def ensure_img2dataset(binary: str | None = None) -> tuple[str | None, str]:
    """Path of an img2dataset binary, installing it in its own venv on first use; (None, why) when impossible."""
    if binary:
        return (binary, "given") if Path(binary).exists() else (None, f"{binary} does not exist")
    exe = IMG2DATASET_VENV / "bin" / "img2dataset"
    if exe.exists():
        return str(exe), f"img2dataset {IMG2DATASET_VERSION} in {IMG2DATASET_VENV.name}"
    base_python = shutil.which("python3.11") or shutil.which("python3") or sys.executable
    try:
        subprocess.run([base_python, "-m", "venv", str(IMG2DATASET_VENV)], check=True, capture_output=True, timeout=300)
        subprocess.run([str(IMG2DATASET_VENV / "bin" / "pip"), "install", "-q", f"img2dataset=={IMG2DATASET_VERSION}"],
                       check=True, capture_output=True, timeout=900)
    except (subprocess.SubprocessError, OSError) as error:
        shutil.rmtree(IMG2DATASET_VENV, ignore_errors=True)
        detail = getattr(error, "stderr", b"") or b""
        return None, f"img2dataset could not be installed: {error} {detail.decode(errors='replace')[-300:]}"
    return str(exe), f"img2dataset {IMG2DATASET_VERSION} installed in {IMG2DATASET_VENV.name}"


def run_ours(urls: list[str], port: int, out: Path, chunk: int) -> tuple[Clock, int]:
    config = DownloadConfig(concurrency=64, per_host_concurrency=64, policy=NetworkPolicy.from_strings(f"127.0.0.1:{port}"))
    store = LocalObjectStore(out)
    ok = 0
    with Clock() as clock:
        for index, start in enumerate(range(0, len(urls), chunk)):
            key = f"shards/bench-{index:05d}.tar"
            with ShardWriter(store, key) as shard:
                outcome = download_chunk(urls[start : start + chunk], config, DecodeLimits(), shard, key, workers=1)
                shard.commit()
            outcome.index.write_parquet(out / f"index-{index:05d}.parquet")
            ok += outcome.counts["ok"]
    if ok != len(urls):
        raise RuntimeError(f"ours stored {ok} of {len(urls)} images: {outcome.counts}")
    return clock, ok


def run_img2dataset(binary: str, urls: list[str], out: Path, chunk: int) -> tuple[Clock, int, dict]:
    url_list = out / "urls.txt"
    out.mkdir(parents=True)
    url_list.write_text("\n".join(urls))
    with Clock() as clock:
        subprocess.run([binary, "--url_list", str(url_list), "--output_folder", str(out / "data"), "--processes_count", "1",
                    "--thread_count", "64", "--image_size", "1024", "--resize_mode", "keep_ratio",
                    "--resize_only_if_bigger", "True", "--output_format", "webdataset", "--number_sample_per_shard",
                    str(chunk), "--enable_wandb", "False"], check=True, capture_output=True,
                       env={**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"})  # fmt: skip
    stats = [json.loads(p.read_text()) for p in (out / "data").glob("*_stats.json")]
    successes = sum(s["successes"] for s in stats)
    errors: dict = {}
    for s in stats:
        for error, count in (s.get("status_dict") or {}).items():
            if error != "success":
                errors[error] = errors.get(error, 0) + count
    # On a loaded machine its 64 threads sometimes time out against http.server; a few losses are
    # tolerated (its rate counts only what it stored), more mean the comparison is broken.
    if successes < 0.98 * len(urls):
        raise RuntimeError(f"img2dataset stored {successes} of {len(urls)} images: {errors}")
    return clock, successes, errors


def run(size: int = 2000, *, chunk: int = 500, pool: int = 400, img2dataset: str | None = None, **_: object) -> dict:
    """``size`` image URLs, downloaded in chunks of ``chunk``."""
    binary, how = ensure_img2dataset(img2dataset)
    server_cores = other_cores()
    with tempfile.TemporaryDirectory(prefix="danqing-download-bench-") as tmp:
        root = Path(tmp) / "www"
        names = make_images(root, size, pool)
        mb = sum((root / n).stat().st_size for n in names) / 1e6
        server = StaticServer(root, server_cores)
        try:
            pin_one_core()  # img2dataset, started from here, inherits the one core
            urls = [f"http://127.0.0.1:{server.port}/{n}" for n in names]
            run_ours(urls[:20], server.port, Path(tmp) / "warmup", chunk)
            with PeakRSS() as peak:
                clock, ok = run_ours(urls, server.port, Path(tmp) / "ours", chunk)
            seconds, cpu = clock.wall, clock.cpu
            comps, notes = [], [f"server: http.server in its own process on cores {sorted(server_cores or [])}"]
            if binary:
                startup, _, _ = run_img2dataset(binary, urls[:10], Path(tmp) / "i2d-startup", chunk)
                theirs, stored, errors = run_img2dataset(binary, urls, Path(tmp) / "i2d", chunk)
                c = comparison("img2dataset, 1 process × 64 threads (start-up excluded)", stored,
                               max(theirs.wall - startup.wall, 1e-9), size / seconds, mb=mb,
                               cpu_seconds=max(theirs.cpu - startup.cpu, 1e-9), ours_cpu_rate=size / cpu)
                c.update(wall_seconds=theirs.wall, startup_seconds=startup.wall, startup_cpu_seconds=startup.cpu,
                         failed=size - stored, errors=errors)
                comps.append(c)
                notes.append(how)
            else:
                comps.append({"name": "img2dataset", "items": None, "seconds": None, "items_per_s": None,
                              "mb_per_s": None, "ratio": None, "note": f"not available: {how}"})
                notes.append(f"img2dataset not available: {how}")
        finally:
            server.stop()
    ratio = comps[0].get("ratio_cpu")
    return stage_result("download", unit="images", items=ok, seconds=seconds, cpu_seconds=cpu, mb=mb, peak=peak,
                        comparisons=comps,
                        targets=[target("≥ 1.5× img2dataset, same process count (per CPU-s)", ratio, 1.5)],
                        details={"chunk": chunk, "distinct_images": min(size, pool), "workers": 1, "concurrency": 64},
                        notes=notes)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--chunk", type=int, default=500)
    parser.add_argument("--pool", type=int, default=400)
    parser.add_argument("--img2dataset", help="an img2dataset binary (default: its own venv, made on first use)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    r = run(args.images, chunk=args.chunk, pool=args.pool, img2dataset=args.img2dataset)
    print(f"{r['items']:,} images (400–1200 px JPEG, {r['mb']:.0f} MB) from 127.0.0.1, one process on one core each")
    print(f"danqing_assets download_chunk: {r['items_per_s']:8.1f} images/s ({r['seconds']:.1f} s, "
          f"peak RSS {r['peak_rss_mb']:.0f} MB)")
    c = r["comparisons"][0]
    if c["ratio"] is not None:
        print(f"img2dataset:                   {c['items_per_s']:8.1f} images/s ({c['seconds']:.1f} s + "
              f"{c['startup_seconds']:.1f} s start-up)")
        print(f"ratio ours / img2dataset:      {c['ratio']:8.2f} (per CPU-s {c['ratio_cpu']:.2f}; "
              f"img2dataset failed {c['failed']}: {c['errors']})")
    else:
        print(c["note"])
    if args.json:
        args.json.write_text(json.dumps(r, indent=2))


if __name__ == "__main__":
    main()
