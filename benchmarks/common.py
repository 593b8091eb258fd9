"""Shared helpers of the benchmark scripts: peak memory, core pinning, timing, result records.

Every stage benchmark's ``run(size, ...)`` returns a :func:`stage_result` dict: the
stage's own figures (items, seconds, MB, peak RSS of the measured section) and a list
of comparisons with baselines measured in the same process on the same input.
"""

from __future__ import annotations

import os
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

REALWORLD = REPO.parent / "shared" / "realworld"


def status_mb(field: str) -> float | None:
    """A field of /proc/self/status (VmRSS, VmHWM) in MB, or None off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


class PeakRSS:
    """Peak resident memory of a section of this process: VmHWM reset on entry (``/proc/self/clear_refs``).

    Where the reset is refused, the process's lifetime peak (ru_maxrss) stands in, and ``reset`` says so.
    """

    def __enter__(self) -> PeakRSS:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.reset = True
        except OSError:
            self.reset = False
        self.before_mb = status_mb("VmRSS")
        return self

    def __exit__(self, *exc: object) -> None:
        hwm = status_mb("VmHWM") if self.reset else None
        self.peak_mb = hwm if hwm is not None else maxrss_mb()


def pin_one_core() -> int:
    """Pin this process (and the children it starts) to one core; the core's number, or -1 where unsupported."""
    try:
        core = sorted(os.sched_getaffinity(0))[0]
        os.sched_setaffinity(0, {core})
        return core
    except (AttributeError, OSError):
        return -1


def other_cores() -> set[int] | None:
    """The cores this process may use besides the first (None where affinity is unsupported)."""
    try:
        cores = sorted(os.sched_getaffinity(0))
    except AttributeError:
        return None
    return set(cores[1:]) or set(cores)


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Clock:
    """Wall seconds and CPU seconds of a section: this process's threads plus the children it waited for.

    On a shared machine the wall time of a pinned process stretches with the other load; its CPU time
    does not, so CPU time gives the per-core rate an idle core would give (cache sharing aside).
    """

    def __enter__(self) -> Clock:
        self._wall, self._cpu, self._children = time.perf_counter(), time.process_time(), children_cpu_seconds()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._wall
        self.cpu = time.process_time() - self._cpu + children_cpu_seconds() - self._children


def best_of(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    wall, _, result = measure(fn, repeats)
    return wall, result


def measure(fn: Callable[[], Any], repeats: int) -> tuple[float, float, Any]:
    """(wall seconds, CPU seconds, result) of the fastest of ``repeats`` calls (fastest by CPU time)."""
    best, result = None, None
    for _ in range(max(1, repeats)):
        with Clock() as clock:
            result = fn()
        if best is None or clock.cpu < best.cpu:
            best = clock
    return best.wall, best.cpu, result


def _rate(amount: float | None, seconds: float | None) -> float | None:
    if amount is None or not seconds or seconds <= 0:
        return None
    return amount / seconds


def comparison(name: str, items: int, seconds: float, ours_rate: float, *, mb: float | None = None,
               extrapolated: bool = False, note: str | None = None, kind: str = "ratio",
               cpu_seconds: float | None = None, ours_cpu_rate: float | None = None) -> dict:
    """A baseline's figures and our rate relative to it (``ratio`` = ours / baseline, higher is better).

    ``ratio_cpu`` compares items per CPU-second (robust to a busy machine) where both sides have it.
    """
    rate = items / seconds if seconds > 0 else float("inf")
    cpu_rate = _rate(items, cpu_seconds)
    return {"name": name, "items": items, "seconds": seconds, "items_per_s": rate,
            "mb_per_s": (mb / seconds) if (mb is not None and seconds > 0) else None,
            "ratio": ours_rate / rate if rate else None, "cpu_seconds": cpu_seconds, "items_per_cpu_s": cpu_rate,
            "ratio_cpu": (ours_cpu_rate / cpu_rate) if (ours_cpu_rate and cpu_rate) else None,
            "extrapolated": extrapolated, "note": note, "kind": kind}


def stage_result(stage: str, *, unit: str, items: int, seconds: float, cores: int = 1, mb: float | None = None,
                 peak: PeakRSS | None = None, comparisons: list[dict] | None = None,
                 targets: list[dict] | None = None, details: dict | None = None, notes: list[str] | None = None,
                 cpu_seconds: float | None = None) -> dict:
    rate = items / seconds if seconds > 0 else float("inf")
    return {
        "stage": stage, "unit": unit, "items": items, "seconds": seconds, "cores": cores,
        "items_per_s": rate, "items_per_s_per_core": rate / cores, "mb": mb,
        "cpu_seconds": cpu_seconds, "items_per_cpu_s": _rate(items, cpu_seconds),
        "mb_per_cpu_s": _rate(mb, cpu_seconds),
        "mb_per_s": (mb / seconds) if (mb is not None and seconds > 0) else None,
        "peak_rss_mb": peak.peak_mb if peak else maxrss_mb(),
        "rss_before_mb": peak.before_mb if peak else None,
        "comparisons": comparisons or [], "targets": targets or [], "details": details or {}, "notes": notes or [],
    }


def target(description: str, measured: float | None, threshold: float, *, higher_is_better: bool = True) -> dict:
    measured = None if measured is None else float(measured)  # numpy scalars do not serialise
    met = None if measured is None else bool(measured >= threshold if higher_is_better else measured <= threshold)
    return {"target": description, "measured": measured, "threshold": threshold, "met": met}
