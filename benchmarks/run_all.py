"""Every stage benchmark in one command: one table, JSON for comparing runs, and the memory-flatness check.

    .venv/bin/python benchmarks/run_all.py [--quick] [--scale 1 | --scale 1,10] [--stages warc,text,...]
        [--device cpu|cuda] [--embed-archs RN50,ViT-B-16] [--json out.json]
    .venv/bin/python -m benchmarks ...          (the same)

Each stage runs in a fresh child process (``run_all.py --child``), so its peak RSS is its own;
inside the child, the stage's ``run(size, ...)`` measures the peak of the timed section (VmHWM
reset on entry) and the baselines on the same input. Stages are pinned to one core (items/s per
core) except semantic dedup, which uses faiss' threads on every core, and the embedding, which
gives torch ``--threads`` threads and the DataLoader one worker process.

``--scale`` multiplies every stage's input (more WARC files, more caption parts, more image
chunks: the units the pipeline streams); with two scales the last table gives, per stage, the
ratio of peak RSS at the largest scale to the smallest ("flat" below 1.5×). Figures on a shared
or busy machine are noisy: compare runs made on the same idle machine. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

# stage name -> (module, size at scale 1 in --quick, options in --quick, size at scale 1, options)
STAGES: dict[str, tuple[str, int, dict, int, dict]] = {
    "warc": ("warc_to_pairs", 2, {"copies": 5}, 4, {"copies": 20, "repeats": 2}),
    "text": ("text_stage", 2, {"part_size": 10_000, "baseline_captions": 20_000}, 4, {"part_size": 50_000}),
    "image": ("image_decode", 200, {"pool": 100, "rounds": 1}, 2000, {"pool": 400, "rounds": 2}),
    "download": ("download", 200, {"chunk": 100, "pool": 50}, 2000, {"chunk": 500, "pool": 400}),
    "embed": ("embedding", 16, {"chunk": 16, "batch_size": 8}, 128, {"chunk": 64, "batch_size": 32, "rounds": 2}),
    "phash": ("near_duplicates", 200_000, {}, 1_000_000, {}),
    "semantic": ("semantic_dedup", 20_000, {"baseline_n": 5_000}, 100_000, {"baseline_n": 20_000}),
}
ALL_CORES = {"semantic"}  # stages that use every core; the others pin themselves to one
FLAT_LIMIT = 1.5


def child(stage: str, size: int, options: dict) -> None:
    module = importlib.import_module(STAGES[stage][0])
    result = module.run(size, **options)
    print("@@RESULT@@" + json.dumps(result))


def run_stage(stage: str, size: int, options: dict, timeout: float) -> dict:
    env = dict(os.environ)
    if stage not in ALL_CORES:
        env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    command = [sys.executable, str(HERE / "run_all.py"), "--child", stage, "--size", str(size),
               "--options", json.dumps(options)]
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        stdout, stderr = proc.communicate()
        return {"stage": stage, "error": f"timed out after {timeout:.0f} s", "stderr": stderr[-2000:]}
    wall = time.perf_counter() - started
    lines = [l for l in stdout.splitlines() if l.startswith("@@RESULT@@")]
    if proc.returncode != 0 or not lines:
        return {"stage": stage, "error": f"exit {proc.returncode}", "stderr": stderr[-2000:]}
    result = json.loads(lines[-1][len("@@RESULT@@"):])
    result["wall_seconds"] = wall
    result["stage_key"] = stage
    return result


def fmt(value: object, spec: str, empty: str = "-") -> str:
    return empty if value is None else format(value, spec)


def print_table(results: list[dict], scale: int) -> None:
    """Rates per wall second per core and per CPU-second (a busy machine stretches the first, not the second)."""
    header = (f"{'stage':<22} {'items':>9} {'unit':<10} {'/s/core':>9} {'/CPU-s':>9} {'MB/CPU-s':>8} {'RSS MB':>7}  "
              f"{'baseline (same run, same input)':<52} {'base /CPU-s':>12} {'x (wall)':>8} {'x (CPU)':>8}")
    print(f"\nscale {scale}")
    print(header)
    print("-" * len(header))
    for r in results:
        if "error" in r:
            print(f"{r['stage']:<22} ERROR: {r['error']}\n{r.get('stderr', '')[-600:]}")
            continue
        comps = r["comparisons"] or [{}]
        for i, c in enumerate(comps):
            left = (f"{r['stage'][:22]:<22} {r['items']:>9,} {r['unit']:<10} {r['items_per_s_per_core']:>9,.1f} "
                    f"{fmt(r.get('items_per_cpu_s'), ',.1f'):>9} {fmt(r.get('mb_per_cpu_s'), '.1f'):>8} "
                    f"{r['peak_rss_mb']:>7,.0f}") if i == 0 else " " * 79
            if c.get("ratio") is None and c.get("note"):
                base, rate, ratio, ratio_cpu = c["note"][:52], "-", "-", "-"
            else:
                base = c.get("name", "-")[:52]
                if c.get("items_per_cpu_s") is not None:
                    rate = fmt(c["items_per_cpu_s"], ",.1f")
                elif c.get("mb_per_cpu_s") is not None:
                    rate = fmt(c["mb_per_cpu_s"], ".1f") + " MB"
                elif c.get("items_per_s") is not None:
                    rate = fmt(c["items_per_s"], ",.1f") + " /s"
                else:
                    rate = fmt(c.get("mb_per_s"), ".1f") + " MB/s"
                ratio = fmt(c.get("ratio"), ".2f")
                ratio_cpu = fmt(c.get("ratio_cpu"), ".2f")
            print(f"{left}  {base:<52} {rate:>12} {ratio:>8} {ratio_cpu:>8}")
        for t in r["targets"]:
            met = {True: "met", False: "MISSED", None: "n/a"}[t["met"]]
            measured = f" (measured {t['measured']:,.2f})" if t["measured"] is not None else ""
            print(f"{'':<22} target {met}: {t['target']}{measured}")
        for note in r["notes"]:
            if "RANDOM" in note:
                print(f"{'':<22} *** {note} ***")


def memory_check(runs: dict[int, list[dict]]) -> list[dict]:
    scales = sorted(runs)
    low, high = scales[0], scales[-1]
    by_stage = {r.get("stage_key", r["stage"]): r for r in runs[low] if "error" not in r}
    rows = []
    for r in runs[high]:
        key = r.get("stage_key", r["stage"])
        if "error" in r or key not in by_stage:
            continue
        a, b = by_stage[key]["peak_rss_mb"], r["peak_rss_mb"]
        rows.append({"stage": r["stage"], "scale_low": low, "scale_high": high, "items_low": by_stage[key]["items"],
                     "items_high": r["items"], "peak_rss_mb_low": a, "peak_rss_mb_high": b, "ratio": b / a,
                     "flat": b / a < FLAT_LIMIT})
    print(f"\npeak RSS, scale {high} against scale {low} (flat: < {FLAT_LIMIT}x)")
    print(f"{'stage':<26} {'items':>21} {'RSS MB':>17} {'ratio':>7}")
    for row in rows:
        print(f"{row['stage']:<26} {row['items_low']:>10,}→{row['items_high']:<10,} {row['peak_rss_mb_low']:>7,.0f}→"
              f"{row['peak_rss_mb_high']:<8,.0f} {row['ratio']:>6.2f}x  {'flat' if row['flat'] else 'NOT FLAT'}")
    return rows


def machine() -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=HERE, capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = None
    return {"when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "host": platform.node(),
            "cpu_count": os.cpu_count(), "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "load_average_start": os.getloadavg(), "python": platform.python_version(), "platform": platform.platform(),
            "processor": _cpu_model(), "git_commit": commit}


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small inputs: a few minutes in all")
    parser.add_argument("--scale", default="1", help="input multiplier(s), comma-separated, e.g. 1,10")
    parser.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated subset of {','.join(STAGES)}")
    parser.add_argument("--device", default="cpu", help="embedding device: cpu or cuda")
    parser.add_argument("--embed-archs", default="RN50", help="cn_clip architectures to embed with (random weights)")
    parser.add_argument("--img2dataset", help="an img2dataset binary (default: benchmarks/.venv-img2dataset, made on first use)")
    parser.add_argument("--sizes", default="", help="sizes at scale 1 that replace the defaults, e.g. phash=10000000,semantic=1000000")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per stage child")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--options", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.size, json.loads(args.options))
        return

    stages = [s for s in args.stages.split(",") if s]
    unknown = set(stages) - set(STAGES)
    if unknown:
        parser.error(f"unknown stages {sorted(unknown)}; known: {', '.join(STAGES)}")
    scales = sorted({int(s) for s in args.scale.split(",") if s})
    sizes = {k: int(v) for k, v in (item.split("=", 1) for item in args.sizes.split(",") if item)}
    if set(sizes) - set(STAGES):
        parser.error(f"--sizes names unknown stages {sorted(set(sizes) - set(STAGES))}")
    info = machine()
    print(f"{info['processor']}, {info['cores_usable']} usable cores, load average {info['load_average_start'][0]:.2f}; "
          f"{'quick' if args.quick else 'full'} sizes, scales {scales}")
    runs: dict[int, list[dict]] = {}
    for scale in scales:
        results = []
        for stage in stages:
            module, quick_size, quick_opts, size, opts = STAGES[stage]
            base, options = (quick_size, dict(quick_opts)) if args.quick else (size, dict(opts))
            base = sizes.get(stage, base)
            if stage == "download" and args.img2dataset:
                options["img2dataset"] = args.img2dataset
            jobs = [options]
            if stage == "embed":
                jobs = [{**options, "arch": arch, "device": args.device} for arch in args.embed_archs.split(",") if arch]
            for job in jobs:
                label = f"size {base * scale:,}" + (f", {job['arch']} on {job['device']}" if "arch" in job else "")
                print(f"  {stage} x{scale} ({label})...", end="", flush=True)
                r = run_stage(stage, base * scale, job, args.timeout)
                print(f" {r.get('wall_seconds', 0):.0f} s" if "error" not in r else f" {r['error']}", flush=True)
                r["scale"] = scale
                results.append(r)
        runs[scale] = results
        print_table(results, scale)
    memory = memory_check(runs) if len(scales) > 1 else []
    info["load_average_end"] = os.getloadavg()
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": info, "quick": args.quick, "scales": scales,
                                         "runs": {str(k): v for k, v in runs.items()}, "memory_check": memory},
                                        indent=2, ensure_ascii=False))
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
