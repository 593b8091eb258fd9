"""Near-duplicate clustering of pHashes at scale, beside baselines measured in the same run.

    .venv/bin/python benchmarks/near_duplicates.py [--sizes 1000000,10000000] [--max-distance 4] [--json out.json]

Hashes: uniformly random 64-bit values with the top (DCT "DC") bit set, as in real pHashes, plus
planted near-duplicate groups covering ~5% of the rows: each group is a seed and 1–9 copies with 0..k
random bit flips (exact copies included), and as many hard negatives at distance k+1..k+2 from a seed.
Each size runs in a fresh child process pinned to one core. Peak RSS is that of the clustering call alone
(VmHWM reset on entry): the input, generated before, is resident and counted once, and nothing else of the
generation stays behind; "bytes per hash" is the peak above the RSS on entry, i.e. beyond the input.

Baselines, same process and data: exact-duplicate grouping only (np.unique + labels: the floor any
near-duplicate method pays), and all-pairs brute force (vectorised XOR + popcount) timed on a sample
of --brute-n rows and extrapolated quadratically. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Clock, PeakRSS, comparison, pin_one_core, stage_result, target  # noqa: E402

import numpy as np  # noqa: E402

from danqing_assets.curation.dedup.near_duplicates import (  # noqa: E402
    _pairs_bruteforce,
    near_duplicate_clusters,
)

TOP_BIT = np.uint64(1 << 63)


def synthetic(n: int, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hashes, and (member row, seed row) of the planted near-duplicates within distance k."""
    rng = np.random.default_rng(seed)
    hashes = rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True) | TOP_BIT
    planted = int(n * 0.05)
    group_sizes = rng.integers(1, 10, planted)  # copies per seed
    group_sizes = group_sizes[: np.searchsorted(np.cumsum(group_sizes), planted) + 1]
    copies = int(group_sizes.sum())
    rows = rng.permutation(n)
    seeds = rows[: group_sizes.size]
    members = rows[group_sizes.size : group_sizes.size + copies].copy()  # a view would keep all of `rows` resident
    member_seed = np.repeat(seeds, group_sizes)
    hashes[members] = hashes[member_seed] ^ _flip_masks(rng, copies, 0, k)
    negatives = rows[group_sizes.size + copies : group_sizes.size + copies + group_sizes.size]
    hashes[negatives] = hashes[seeds[: negatives.size]] ^ _flip_masks(rng, negatives.size, k + 1, k + 2, exact=True)
    return hashes, members, member_seed


def _flip_masks(rng: np.random.Generator, count: int, low: int, high: int, exact: bool = False) -> np.ndarray:
    """XOR masks with between low and high bits set (exactly that many distinct bits when exact)."""
    flips = rng.integers(low, high + 1, count)
    masks = np.zeros(count, dtype=np.uint64)
    for t in range(high):
        bit = np.uint64(1) << rng.integers(0, 64, count).astype(np.uint64)
        if exact:  # redraw positions already set
            for _ in range(8):
                again = (masks & bit) != 0
                if not again.any():
                    break
                bit[again] = np.uint64(1) << rng.integers(0, 64, int(again.sum())).astype(np.uint64)
        masks |= np.where(t < flips, bit, np.uint64(0))
    return masks


def exact_only(hashes: np.ndarray) -> tuple[np.ndarray, int]:
    _, inverse = np.unique(hashes, return_inverse=True)
    first = np.full(inverse.max() + 1, hashes.size, dtype=np.int64)
    np.minimum.at(first, inverse, np.arange(hashes.size))
    labels = first[inverse]
    sizes = np.bincount(inverse)
    return labels, int(np.count_nonzero(sizes >= 2))


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def bytes_per_hash(peak: PeakRSS, n: int) -> float:
    """Peak RSS of the clustering above the RSS it started with (input included there), per input hash."""
    return (peak.peak_mb - peak.before_mb) * 2**20 / n


def one_size(n: int, k: int, brute_n: int) -> list[dict]:
    try:
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    except (AttributeError, OSError):
        pass
    hashes, members, member_seed = synthetic(n, k)
    rss_input = rss_mb()
    results = []

    started = time.perf_counter()
    _, exact_clusters = exact_only(hashes)
    exact_s = time.perf_counter() - started
    results.append({"n": n, "method": "baseline: exact duplicates only", "seconds": exact_s, "candidate_pairs": 0,
                    "edges": 0, "clusters": exact_clusters, "peak_rss_mb": None})

    sample = hashes[:brute_n]
    started = time.perf_counter()
    brute_i, _ = _pairs_bruteforce(sample, k, exclude=np.zeros(sample.size, dtype=bool))
    brute_s = time.perf_counter() - started
    results.append({"n": n, "method": f"baseline: brute force (n={brute_n:,}, x{(n / brute_n) ** 2:,.0f})",
                    "seconds": brute_s * (n / brute_n) ** 2, "candidate_pairs": n * (n - 1) // 2,
                    "edges": None, "clusters": None, "peak_rss_mb": None, "measured_seconds": brute_s,
                    "measured_pairs": int(brute_i.size)})

    started = time.perf_counter()
    with PeakRSS() as peak:
        labels, stats = near_duplicate_clusters(hashes, k)
    seconds = time.perf_counter() - started
    recall = float(np.mean(labels[members] == labels[member_seed]))
    results.append({"n": n, "method": f"multi-index (k={k}, m={stats.blocks}, {stats.permutations} sorts, "
                    f"prefix>={stats.prefix_bits_min}b)", "seconds": seconds,
                    "candidate_pairs": stats.candidate_pairs, "edges": stats.edges, "clusters": stats.clusters,
                    "peak_rss_mb": peak.peak_mb, "input_rss_mb": rss_input, "planted_recall": recall,
                    "peak_bytes_per_hash": bytes_per_hash(peak, n), "stats": stats.as_dict()})
    return results


def run(size: int = 1_000_000, *, max_distance: int = 4, brute_n: int = 20_000, **_: object) -> dict:
    """``size`` pHashes clustered at Hamming distance ``max_distance``; one core; for the harness."""
    pin_one_core()
    hashes, members, member_seed = synthetic(size, max_distance)
    with PeakRSS() as peak, Clock() as clock:
        labels, stats = near_duplicate_clusters(hashes, max_distance)
    seconds = clock.wall
    rate = size / seconds
    started = time.perf_counter()
    exact_only(hashes)
    exact_s = time.perf_counter() - started
    sample = hashes[: min(brute_n, size)]
    started = time.perf_counter()
    _pairs_bruteforce(sample, max_distance, exclude=np.zeros(sample.size, dtype=bool))
    brute_s = (time.perf_counter() - started) * (size / sample.size) ** 2
    # sorts are n·log n and candidate pairs grow ~linearly at a fixed share of near-duplicates; projected as n·log n
    ten_million = seconds * (1e7 * np.log(1e7)) / (size * np.log(size))
    return stage_result(
        "phash_near_duplicates", unit="hashes", items=size, seconds=seconds, cpu_seconds=clock.cpu, peak=peak,
        comparisons=[comparison("exact duplicates only (np.unique): the floor", size, exact_s, rate, kind="floor"),
                     comparison(f"all-pairs brute force (n={sample.size:,}, extrapolated n²)", size, brute_s, rate,
                                extrapolated=True)],
        targets=[target("10M hashes < 300 s (projected as n·log n from this size)" if size < 10_000_000
                        else "10M hashes < 300 s", ten_million, 300.0, higher_is_better=False)],
        details={"max_distance": max_distance, "planted_recall": float(np.mean(labels[members] == labels[member_seed])),
                 "input_mb": hashes.nbytes / 1e6, "peak_bytes_per_hash": bytes_per_hash(peak, size),
                 "projected_10m_seconds": ten_million, "stats": stats.as_dict()},
        notes=[f"all of a snapshot's hashes are clustered at once: peak {bytes_per_hash(peak, size):.1f} bytes per "
               "hash beyond the 8-byte input (one working copy of the distinct hashes, then the int64 labels)"],
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000000,10000000")
    parser.add_argument("--max-distance", type=int, default=4)
    parser.add_argument("--brute-n", type=int, default=20_000)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one_size(args.child, args.max_distance, args.brute_n)))
        return

    results: list[dict] = []
    for n in [int(s) for s in args.sizes.split(",") if s]:
        out = subprocess.run([sys.executable, __file__, "--child", str(n), "--max-distance", str(args.max_distance),
                              "--brute-n", str(args.brute_n)], check=True, capture_output=True, text=True)
        results.extend(json.loads(out.stdout.strip().splitlines()[-1]))

    def fmt(v: object, spec: str) -> str:
        return "-" if v is None else format(v, spec)

    header = f"{'rows':>12} {'method':<58} {'seconds':>9} {'cand. pairs':>14} {'edges':>10} {'clusters':>10} " \
             f"{'peak RSS MB':>11} {'recall':>6}"
    print(header)
    print("-" * len(header))
    for r in results:
        print(f"{r['n']:>12,} {r['method']:<58} {r['seconds']:>9.2f} {fmt(r['candidate_pairs'], ',d'):>14} "
              f"{fmt(r['edges'], ',d'):>10} {fmt(r['clusters'], ',d'):>10} {fmt(r['peak_rss_mb'], ',.0f'):>11} "
              f"{fmt(r.get('planted_recall'), '.3f'):>6}")
    print("\nclusters: groups of 2+ rows; recall: planted copies (distance <= k) found in their seed's cluster; "
          "peak RSS of the clustering call (input included), and above its starting RSS per hash: "
          + ", ".join(f"{r['n']:,}: {r['peak_bytes_per_hash']:.1f} B" for r in results if "peak_bytes_per_hash" in r))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
