"""Semantic near-duplicate clustering of CLIP-like embeddings at scale, beside an exact baseline in the same run.

    .venv/bin/python benchmarks/semantic_dedup.py [--n 1000000] [--dims 768,512] [--structures uniform,topics]
        [--dtype float16|float32] [--nprobe 16] [--baseline-n 20000] [--hnsw-n 0] [--json out.json]

Embeddings (L2-normalised, generated in chunks and written block by block to a scratch
:class:`~danqing_assets.curation.embed.vector_file.VectorFile`, float16 by default, as the
``clip_filtered_pairs`` asset stores a snapshot's; every search reads that file-backed array):

* ``uniform`` — uniformly random unit vectors: no cluster structure at all, the worst case for an
  inverted file (k-means cells align with nothing, so a close pair straddles cells as often as geometry
  allows);
* ``topics`` — closer to real CLIP image embeddings: a shared direction (weight 0.4), one of n/200
  topic directions (0.6) and noise, so random pairs sit at cosine ≈ 0.16 and same-topic pairs at ≈ 0.52.

Planted near-duplicates cover ~5% of the rows: groups of a seed and 1–4 copies at cosine distance
uniform in [0, 0.098] from it (10% of copies exact), plus as many hard negatives at 0.11–0.2 from a
seed. Recall = planted copies that end in their seed's cluster; "negatives merged" = hard negatives that
end in their seed's cluster (legitimate only through a chain of true edges).

Each (dimension, structure) runs in a fresh child process with all cores. Peak RSS is the child's high-water
mark reset just before the clustering call (``/proc/self/clear_refs``), so it is what the call itself
holds: the input is file-backed and its pages are dropped after each batch (VmRSS at the reset is printed
beside it; the result gives the peak per row, in all and above that RSS); where the reset is unavailable
it is the child's ru_maxrss, data generation included. Baselines in the same child and data: exact
``IndexFlatIP`` ``range_search`` (the "flat" mode: upper-triangle blocks) on the first ``--baseline-n``
rows, extrapolated quadratically; optionally HNSW on ``--hnsw-n`` rows. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from common import comparison, stage_result, status_mb, target  # noqa: E402

from danqing_assets.curation.dedup.semantic import (  # noqa: E402
    DEFAULT_MAX_DISTANCE,
    DEFAULT_NPROBE,
    faiss,
    semantic_clusters,
)
from danqing_assets.curation.embed.vector_file import VectorFile, drop_resident_pages

CHUNK = 65_536


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def reset_peak_rss() -> float | None:
    """Current RSS in MB, after resetting the kernel's peak (VmHWM) to it (Linux ≥ 4.0), else None."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return None
    return status_mb("VmRSS")


def _unit_rows(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def _base_blocks(rng: np.random.Generator, n: int, d: int, structure: str) -> Iterator[np.ndarray]:
    """The rows before any near-duplicate is planted, CHUNK at a time."""
    if structure == "topics":
        shared = _unit_rows(rng, 1, d)[0]
        topics = _unit_rows(rng, max(1, n // 200), d)
    for s in range(0, n, CHUNK):
        rows = _unit_rows(rng, min(CHUNK, n - s), d)
        if structure == "topics":
            t = rng.integers(0, topics.shape[0], rows.shape[0])
            rows = 0.4 * shared + 0.6 * topics[t] + np.sqrt(1 - 0.4**2 - 0.6**2) * rows
            rows /= np.linalg.norm(rows, axis=1, keepdims=True)
        yield rows


def _plan(rng: np.random.Generator, n: int, beta: float, share: float) -> dict[str, np.ndarray]:
    """Which rows become copies (and of which seed, at which distance) and which hard negatives."""
    planted = int(n * share)
    sizes = rng.integers(1, 5, planted)
    sizes = sizes[: np.searchsorted(np.cumsum(sizes), planted) + 1]
    copies = int(sizes.sum())
    order = rng.permutation(n)
    seeds = order[: sizes.size]
    members = order[sizes.size : sizes.size + copies]
    member_seed = np.repeat(seeds, sizes)
    delta = rng.uniform(0.0, beta * 0.98, copies)
    delta[rng.random(copies) < 0.1] = 0.0
    negatives = order[sizes.size + copies : 2 * sizes.size + copies]
    negative_delta = rng.uniform(beta * 1.1, beta * 2.0, negatives.size)
    return {"members": members, "member_seed": member_seed, "delta": delta, "negatives": negatives,
            "negative_seed": seeds[: negatives.size], "negative_delta": negative_delta}  # fmt: skip


def _planted_rows(rng: np.random.Generator, x: np.ndarray, plan: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Rows (ascending) to overwrite and their new values: each copy or negative at its distance from its seed.

    Seeds are never overwritten, so every new value depends on the base rows only.
    """
    rows, values = [], []
    for targets, sources, distances in ((plan["members"], plan["member_seed"], plan["delta"]),
                                        (plan["negatives"], plan["negative_seed"], plan["negative_delta"])):  # fmt: skip
        for s in range(0, targets.size, CHUNK):
            src = x[sources[s : s + CHUNK]].astype(np.float64)
            src /= np.linalg.norm(src, axis=1, keepdims=True)
            z = rng.standard_normal(src.shape)
            z -= (z * src).sum(axis=1, keepdims=True) * src
            z /= np.linalg.norm(z, axis=1, keepdims=True)
            c = (1.0 - distances[s : s + CHUNK])[:, None]
            rows.append(targets[s : s + CHUNK])
            values.append((c * src + np.sqrt(1.0 - c * c) * z).astype(x.dtype))
    rows_all = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    values_all = np.concatenate(values) if values else np.zeros((0, x.shape[1]), dtype=x.dtype)
    order = np.argsort(rows_all, kind="stable")
    return rows_all[order], values_all[order]


def synthetic(
    n: int, d: int, structure: str, dtype: str, beta: float = DEFAULT_MAX_DISTANCE, share: float = 0.05, seed: int = 0,
    directory: str | None = None,
) -> dict:  # fmt: skip
    """The embeddings, written block by block to a :class:`VectorFile` as the asset writes a snapshot's (the
    base rows to a first file, then again with the planted rows in place): ``data["x"]`` is the final file's
    read-only, file-backed array, ``data["file"]`` the file (close it when done); plus the planted pairs."""
    rng = np.random.default_rng(seed)
    with VectorFile(d, dtype=dtype, directory=directory) as base:
        for block in _base_blocks(rng, n, d, structure):
            base.append(block)
        base_x = base.array()
        plan = _plan(rng, n, beta, share)
        rows, values = _planted_rows(rng, base_x, plan)
        final = VectorFile(d, dtype=dtype, directory=directory)
        for s in range(0, n, CHUNK):
            block = np.array(base_x[s : s + CHUNK])
            lo, hi = np.searchsorted(rows, [s, s + block.shape[0]])
            block[rows[lo:hi] - s] = values[lo:hi]
            final.append(block)
            drop_resident_pages(base_x)
        del base_x
    return {"x": final.array(), "file": final, **plan}


def recall_figures(labels: np.ndarray, data: dict[str, np.ndarray], limit: int | None = None) -> dict[str, float]:
    members, seeds, delta = data["members"], data["member_seed"], data["delta"]
    negatives, negative_seed = data["negatives"], data["negative_seed"]
    if limit is not None:  # pairs inside the first `limit` rows only
        keep = (members < limit) & (seeds < limit)
        members, seeds, delta = members[keep], seeds[keep], delta[keep]
        keep = (negatives < limit) & (negative_seed < limit)
        negatives, negative_seed = negatives[keep], negative_seed[keep]
    found = labels[members] == labels[seeds]
    out = {"planted_pairs": int(members.size), "planted_recall": float(found.mean()) if found.size else None}
    for lo, hi in ((0.0, 0.05), (0.05, 0.09), (0.09, 0.1)):
        band = (delta >= lo) & (delta < hi)
        out[f"recall_{lo:.2f}_{hi:.2f}"] = float(found[band].mean()) if band.any() else None
    out["negatives_merged"] = float(np.mean(labels[negatives] == labels[negative_seed])) if negatives.size else None
    return out


def one_config(n: int, d: int, structure: str, args: argparse.Namespace) -> list[dict]:
    started = time.perf_counter()
    data = synthetic(n, d, structure, args.dtype)
    generate_s = time.perf_counter() - started
    try:
        return _search_all(data, n, d, structure, generate_s, args)
    finally:
        data["file"].close()


def _search_all(data: dict, n: int, d: int, structure: str, generate_s: float, args: argparse.Namespace) -> list[dict]:
    x = data["x"]
    base = {"n": n, "dim": d, "structure": structure, "dtype": args.dtype, "faiss": faiss.__version__,
            "threads": faiss.omp_get_max_threads()}  # fmt: skip
    rss_input = rss_mb()
    results = []

    sample_n = min(args.baseline_n, n)
    labels, stats = semantic_clusters(x[:sample_n], index="flat", threads=args.threads)
    factor = (n / sample_n) ** 2
    results.append({**base, "method": f"baseline: exact flat (n={sample_n:,}, x{factor:,.0f})",
                    "seconds": stats.seconds * factor, "measured_seconds": stats.seconds,
                    "candidate_pairs": n * (n - 1) // 2, "edges": None, "clusters": None, "peak_rss_mb": None,
                    **{f"sample_{k}": v for k, v in recall_figures(labels, data, sample_n).items()},
                    "stats": stats.as_dict()})  # fmt: skip

    if args.hnsw_n:
        hn = min(args.hnsw_n, n)
        labels, stats = semantic_clusters(x[:hn], index="hnsw", k=args.k, threads=args.threads)
        results.append({**base, "method": f"hnsw (n={hn:,})", "seconds": stats.seconds, "peak_rss_mb": None,
                        "candidate_pairs": None, "edges": stats.edges, "clusters": stats.clusters,
                        **{f"sample_{k}": v for k, v in recall_figures(labels, data, hn).items()},
                        "stats": stats.as_dict()})  # fmt: skip

    del labels  # the baselines' arrays must not count in the peak below
    drop_resident_pages(x)
    rss_before = reset_peak_rss()
    labels, stats = semantic_clusters(x, index=args.index, k=args.k, nprobe=args.nprobe, threads=args.threads)
    peak_during = status_mb("VmHWM")
    results.append({**base, "method": stats.index_description, "seconds": stats.seconds,
                    "candidate_pairs": stats.candidate_pairs, "edges": stats.edges, "clusters": stats.clusters,
                    "peak_rss_mb": rss_mb(), "input_rss_mb": rss_input, "input_mb": x.nbytes / 2**20,
                    "input_file_backed": True, "rss_before_call_mb": rss_before, "peak_rss_during_call_mb": peak_during,
                    **bytes_per_row(peak_during, rss_before, n), "generate_seconds": generate_s,
                    **recall_figures(labels, data), "stats": stats.as_dict()})  # fmt: skip
    return results


def bytes_per_row(peak_mb: float | None, before_mb: float | None, n: int) -> dict[str, float | None]:
    """Peak RSS of the call per row, in all and above the RSS it started from (what the search itself holds)."""
    if peak_mb is None or not n:
        return {"peak_rss_bytes_per_row": None, "call_bytes_per_row": None}
    return {"peak_rss_bytes_per_row": peak_mb * 2**20 / n,
            "call_bytes_per_row": (peak_mb - before_mb) * 2**20 / n if before_mb is not None else None}  # fmt: skip


def run(size: int = 1_000_000, *, dim: int = 768, structure: str = "topics", dtype: str = "float16",
        baseline_n: int = 20_000, threads: int | None = None, index: str = "ivf", **_: object) -> dict:
    """``size`` embeddings of ``dim`` dimensions clustered at the default β, all cores; for the harness.

    ``index="ivf"`` by default: the index a snapshot of a million rows gets under "auto" (which searches
    exactly up to FLAT_MAX_ROWS), so smaller runs project to 1M with the method 1M would use.
    """
    args = argparse.Namespace(dtype=dtype, threads=threads, baseline_n=baseline_n, hnsw_n=0, index=index,
                              k=16, nprobe=DEFAULT_NPROBE)
    results = one_config(size, dim, structure, args)
    flat, r = results[0], results[-1]
    rate = size / r["seconds"]
    # IVF with nlist ≈ 2·sqrt(n) and a fixed nprobe: the join grows as n^1.5; exact flat as n²
    exponent = 2.0 if r["stats"]["index"] == "flat" else 1.5
    one_million = r["seconds"] * (1e6 / size) ** exponent
    peak = r.get("peak_rss_during_call_mb") or r["peak_rss_mb"]
    out = stage_result(
        "semantic_dedup", unit="embeddings", items=size, seconds=r["seconds"], cores=r["threads"],
        comparisons=[comparison(flat["method"], size, flat["seconds"], rate, extrapolated=True)],
        targets=[target(f"1M embeddings < 600 s (projected as n^{exponent:g} from this size)" if size < 1_000_000
                        else "1M embeddings < 600 s", one_million, 600.0, higher_is_better=False)],
        details={"method": r["method"], "dim": dim, "structure": structure, "dtype": dtype,
                 "planted_recall": r["planted_recall"], "negatives_merged": r["negatives_merged"],
                 "input_mb": r["input_mb"], "input_file_backed": r["input_file_backed"],
                 "peak_rss_bytes_per_row": r["peak_rss_bytes_per_row"], "call_bytes_per_row": r["call_bytes_per_row"],
                 "projected_1m_seconds": one_million, "stats": r["stats"]},
        notes=[("embeddings are read from a file-backed float16 VectorFile, batch by batch (as the asset does); "
                "what grows with n is the search's per-row bookkeeping and the k-means sample (~sqrt(n) rows)")],
    )
    out["peak_rss_mb"], out["rss_before_mb"] = peak, r.get("rss_before_call_mb")
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dims", default="768,512")
    parser.add_argument("--structures", default="uniform,topics")
    parser.add_argument("--dtype", choices=["float32", "float16"], default="float16")
    parser.add_argument("--index", default="auto")
    parser.add_argument("--nprobe", type=int, default=DEFAULT_NPROBE)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--baseline-n", type=int, default=20_000)
    parser.add_argument("--hnsw-n", type=int, default=0)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        d, structure = args.child.split(":")
        print(json.dumps(one_config(args.n, int(d), structure, args)))
        return

    results: list[dict] = []
    passthrough = [a for a in sys.argv[1:] if not a.startswith("--json")]
    if "--json" in sys.argv:
        i = sys.argv.index("--json")
        passthrough = sys.argv[1:i] + sys.argv[i + 2 :]
    for d in [int(s) for s in args.dims.split(",") if s]:
        for structure in [s for s in args.structures.split(",") if s]:
            out = subprocess.run([sys.executable, __file__, *passthrough, "--child", f"{d}:{structure}"],
                                 check=True, capture_output=True, text=True, env={**os.environ})  # fmt: skip
            results.extend(json.loads(out.stdout.strip().splitlines()[-1]))
            print_table(results[-2 - bool(args.hnsw_n) :], header=len(results) <= 2 + bool(args.hnsw_n))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def print_table(results: list[dict], header: bool = True) -> None:
    def fmt(v: object, spec: str) -> str:
        return "-" if v is None else format(v, spec)

    if header:
        line = (f"{'rows':>10} {'d':>4} {'data':<8} {'method':<58} {'seconds':>9} {'cand. pairs':>16} {'edges':>9} "
                f"{'peak RSS MB':>11} {'recall':>7} {'δ≥0.09':>7} {'neg.':>6}")  # fmt: skip
        print(line)
        print("-" * len(line))
    for r in results:
        recall = r.get("planted_recall", r.get("sample_planted_recall"))
        hard = r.get("recall_0.09_0.10", r.get("sample_recall_0.09_0.10"))
        negatives = r.get("negatives_merged", r.get("sample_negatives_merged"))
        print(f"{r['n']:>10,} {r['dim']:>4} {r['structure']:<8} {r['method'][:58]:<58} {r['seconds']:>9.1f} "
              f"{fmt(r['candidate_pairs'], ',d'):>16} {fmt(r['edges'], ',d'):>9} {fmt(r['peak_rss_mb'], ',.0f'):>11} "
              f"{fmt(recall, '.4f'):>7} {fmt(hard, '.4f'):>7} {fmt(negatives, '.4f'):>6}", flush=True)  # fmt: skip
        if "stats" in r and r.get("peak_rss_mb"):
            s = r["stats"]
            print(f"{'':>24} phases: prepare {s['seconds_prepare']:.1f}s, k-means {s['seconds_train']:.1f}s, "
                  f"assign {s['seconds_assign']:.1f}s, join {s['seconds_search']:.1f}s, components "
                  f"{s['seconds_components']:.1f}s; input {r['input_mb']:,.0f} MB; RSS before the call "
                  f"{fmt(r['rss_before_call_mb'], ',.0f')} MB, peak during it "
                  f"{fmt(r['peak_rss_during_call_mb'], ',.0f')} MB; generate {r['generate_seconds']:.0f}s; "
                  f"BLAS {s['blas']}, threads {s['threads']}; identical {s['identical']:,}, saturated "
                  f"{s['saturated']:,}, largest list {s['largest_list']:,}, pruned probes {s['pruned_probes']:,}, "
                  f"capped probes {s['capped_probes']:,}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
