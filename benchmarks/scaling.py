"""Turn a benchmark run (``run_all.py --json``) into the cost of one Common Crawl snapshot and of DanQing's scale.

    .venv/bin/python benchmarks/scaling.py benchmarks/results/<run>.json [--scale 10] [--gpu-images-per-s 566]

Prints markdown: core-hours per stage, GPU-hours for the embeddings, object-store bytes. Every
constant below is either a published figure (source named) or an assumption (said so);
docs/performance.md explains them. Per-core rates come from the run, at its largest scale.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

# --- Common Crawl (assumptions from the README and arXiv 2404.09770: "each archive ~75 TB") ---
SNAPSHOT_WARC_FILES = 90_000  # README: a full snapshot has ~90,000 WARC files
WARC_FILE_MB = 1_000  # README: one WARC is ~1 GB gzipped
SNAPSHOTS_2024_2025 = 21  # ../shared/realworld/cc-collinfo/collinfo.json: CC-MAIN-2024-10 … CC-MAIN-2025-47

# --- DanQing funnel (../shared/PIPELINE.md, arXiv 2601.10305) ---
RAW_PAIRS = 1_050_000_000
AFTER_COARSE = 706_000_000  # URLs that reach the download
DOWNLOADED = 475_000_000  # 67 % success
AFTER_VISUAL = 178_000_000  # pairs that reach Chinese-CLIP in our order (embeddings after the visual filters)
RELEASE_BYTES_PER_IMAGE = 11e12 / 100e6  # ModelScope release: 10–12 TB for ~100M images

# --- Chinese-CLIP ViT-L/14 on a GPU ---
# timm results/benchmark-infer-amp-nchw-pt240-cu124-rtx4090.csv: vit_large_patch14_clip_quickgelu_224,
# AMP, batch 1024: 566.47 images/s on an RTX 4090. No published A100 figure found: we assume an A100-class GPU
# does at least this (its dense fp16 tensor peak, 312 TFLOPS, is above the 4090's).
GPU_IMAGES_PER_S = 566.0
TEXT_TOWER_SHARE = 0.06  # RoBERTa-wwm-ext-base at 52 tokens ≈ 9 GFLOPs beside ViT-L/14's ≈ 162 GFLOPs per image
EMBEDDING_BYTES_PER_PAIR = 2 * 768 * 2 + 4  # image + text float16 768-d, float32 score


def stage(results: list[dict], prefix: str) -> dict | None:
    return next((r for r in results if r.get("stage", "").startswith(prefix) and "error" not in r), None)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("runs", type=Path, nargs="+", help="run JSON files; a later file's stage replaces an earlier's")
    parser.add_argument("--scale", help="which scale of the run to use (default: the largest)")
    parser.add_argument("--gpu-images-per-s", type=float, default=GPU_IMAGES_PER_S)
    args = parser.parse_args()
    merged: dict[str, dict] = {}
    for path in args.runs:
        run = json.loads(path.read_text())
        scale = args.scale or str(max(int(s) for s in run["runs"]))
        for r in run["runs"][scale]:
            if "error" not in r:
                merged[r["stage"]] = r
    run = json.loads(args.runs[0].read_text())
    results = list(merged.values())
    warc, text, image, download = (stage(results, p) for p in ("warc", "text", "image", "download"))
    phash, semantic, embed = (stage(results, p) for p in ("phash", "semantic", "embedding"))

    snapshot_mb = SNAPSHOT_WARC_FILES * WARC_FILE_MB
    pairs_per_snapshot = RAW_PAIRS / SNAPSHOTS_2024_2025
    rows = []

    def hours(items: float, per_core_per_s: float) -> float:
        return items / per_core_per_s / 3600

    def per_core(r: dict, key: str = "items") -> float:
        """Per CPU-second where measured (robust on a busy machine), else per wall second per core."""
        cpu = r.get(f"{key}_per_cpu_s") if key == "items" else r.get("mb_per_cpu_s")
        return cpu if cpu else (r[f"{key}_per_s"] / r["cores"])

    if warc:
        mbps = per_core(warc, "mb")
        bare = next(c for c in warc["comparisons"] if "FastWARC" in c["name"])
        limit = bare.get("mb_per_cpu_s") or bare["mb_per_s"]
        rows.append(("WARC → raw pairs", f"{snapshot_mb / 1e6:,.0f} TB gz WARC", f"{mbps:.1f} MB/s",
                     hours(snapshot_mb, mbps), hours(snapshot_mb, mbps) * SNAPSHOTS_2024_2025,
                     f"bare FastWARC read {limit:.1f} MB/s: {hours(snapshot_mb, limit):,.0f} core-h per snapshot"))
    if text:
        r = per_core(text)
        rows.append(("text stage", f"{pairs_per_snapshot / 1e6:,.0f}M captions", f"{r:,.0f} captions/s",
                     hours(pairs_per_snapshot, r), hours(RAW_PAIRS, r), "1.05B captions in all"))
    if download:
        r = per_core(download)
        rows.append(("download (+ decode, measure, pHash, store)", f"{AFTER_COARSE / SNAPSHOTS_2024_2025 / 1e6:,.0f}M URLs",
                     f"{r:,.1f} images/s", hours(AFTER_COARSE / SNAPSHOTS_2024_2025, r), hours(AFTER_COARSE, r),
                     "CPU only, local server; on the web, latency and politeness bound the wall time"))
    if image:
        r = per_core(image)
        rows.append(("  of which image work alone", f"{DOWNLOADED / SNAPSHOTS_2024_2025 / 1e6:,.0f}M images",
                     f"{r:,.1f} images/s", hours(DOWNLOADED / SNAPSHOTS_2024_2025, r), hours(DOWNLOADED, r),
                     "decode + resize + metrics + pHash + re-encode"))
    def projected_core_hours(r: dict, n: float, exponent: float) -> float:
        """Core-hours at n rows from a run at r["items"] rows, as (n / measured)^exponent (n·log n for 1.0)."""
        m = r["items"]
        factor = (n * math.log(n)) / (m * math.log(m)) if exponent == 1.0 else (n / m) ** exponent
        seconds = r.get("cpu_seconds") or r["seconds"] * r["cores"]
        return seconds * factor / 3600

    if phash:
        n = DOWNLOADED / SNAPSHOTS_2024_2025
        rows.append(("pHash near-duplicates", f"{n / 1e6:,.0f}M hashes", f"{phash['items_per_s_per_core']:,.0f} hashes/s",
                     projected_core_hours(phash, n, 1.0), projected_core_hours(phash, n, 1.0) * SNAPSHOTS_2024_2025,
                     f"one step per snapshot, all hashes in memory; projected n·log n from {phash['items']:,}"))
    if semantic:
        n = AFTER_VISUAL / SNAPSHOTS_2024_2025
        exponent = 2.0 if semantic["details"]["stats"]["index"] == "flat" else 1.5
        rows.append(("semantic dedup (faiss)", f"{n / 1e6:,.1f}M embeddings",
                     f"{semantic['items_per_s_per_core']:,.0f} embeddings/s", projected_core_hours(semantic, n, exponent),
                     projected_core_hours(semantic, n, exponent) * SNAPSHOTS_2024_2025,
                     f"{semantic['details']['method'].split(' (')[0]}; one step per snapshot; projected n^{exponent:g} from "
                     f"{semantic['items']:,} rows"))

    print(f"runs: {', '.join(p.name for p in args.runs)} (each at {'scale ' + args.scale if args.scale else 'its largest scale'}), {run['machine'].get('processor')}, "
          f"load average {run['machine']['load_average_start'][0]:.1f} at the start\n")
    print("Rates are per CPU-second where the run measured CPU time, else per wall second per core.\n")
    print("| stage | one snapshot | rate per core (measured) | core-hours, one snapshot | core-hours, DanQing scale | note |")
    print("|---|---|---|---:|---:|---|")
    for name, amount, rate, one, all_, note in rows:
        print(f"| {name} | {amount} | {rate} | {one:,.{0 if one >= 10 else 2}f} | {all_:,.{0 if all_ >= 10 else 1}f} | {note} |")

    gpu_rate = args.gpu_images_per_s / (1 + TEXT_TOWER_SHARE)
    gpu_h = AFTER_VISUAL / gpu_rate / 3600
    print(f"\nEmbeddings (Chinese-CLIP ViT-L/14, fp16): {AFTER_VISUAL / 1e6:,.0f}M pairs at {gpu_rate:,.0f} pairs/s "
          f"per GPU = **{gpu_h:,.0f} GPU-hours** in all, {gpu_h / SNAPSHOTS_2024_2025:,.1f} per snapshot.")
    if embed:
        ratio = embed["comparisons"][0]["ratio"]
        print(f"Pipeline / bare forward measured here ({embed['details']['arch']}, {embed['details']['device']}, random "
              f"weights): {ratio:.2f}.")

    raw_bytes = (warc or {}).get("details", {}).get("parquet_bytes_per_pair") or 0
    stored = (image or {}).get("details", {}).get("stored_over_read_bytes") or 1.0
    print("\nObject store, DanQing scale (all 21 snapshots):")
    print(f"- raw_pairs parquet: {raw_bytes:,.0f} bytes/pair measured × 1.05B = {raw_bytes * RAW_PAIRS / 1e9:,.0f} GB")
    print(f"- text_filtered_pairs (+ rejected): about the same again, ≈ {raw_bytes * RAW_PAIRS / 1e9:,.0f} GB")
    print(f"- images: {DOWNLOADED / 1e6:,.0f}M × {RELEASE_BYTES_PER_IMAGE / 1e3:,.0f} KB × {stored:.2f} (re-encoded / "
          f"downloaded, measured) = {DOWNLOADED * RELEASE_BYTES_PER_IMAGE * stored / 1e12:,.0f} TB")
    print(f"- embeddings: {AFTER_VISUAL / 1e6:,.0f}M × {EMBEDDING_BYTES_PER_PAIR:,} bytes = "
          f"{AFTER_VISUAL * EMBEDDING_BYTES_PER_PAIR / 1e9:,.0f} GB")
    print(f"- WARC input read (not stored): {snapshot_mb * SNAPSHOTS_2024_2025 / 1e9:,.1f} PB")


if __name__ == "__main__":
    main()
