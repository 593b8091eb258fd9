"""The per-stage funnel: how many pairs each stage kept, per snapshot."""

from __future__ import annotations

from collections.abc import Sequence

from .resources.storage import ObjectStore
from .resources.tables import load_manifest

# Dataset assets in pipeline order.
STAGES: list[str] = ["raw_pairs", "text_filtered_pairs", "image_filtered_pairs", "clip_filtered_pairs", "dedup_index",
                     "release"]


def stage_rows(store: ObjectStore, stage: str, snapshot: str) -> int | None:
    """Pairs of ``snapshot`` that ``stage`` kept, or None when it is not materialised."""
    if stage == "release":
        from .assets.release import load_staged
        from .settings import get_settings

        staged = load_staged(store, get_settings().release_version, snapshot)
        return staged.rows if staged else None
    manifest = load_manifest(store, stage, snapshot)
    if manifest is None:
        return None
    # the cumulative index holds every snapshot up to this one: count this snapshot's own pairs
    return manifest.stats["snapshot_kept"] if stage == "dedup_index" else manifest.rows


def funnel_rows(store: ObjectStore, snapshots: Sequence[str], stages: Sequence[str] = STAGES) -> dict[str, dict[str, int | None]]:
    """{stage: {snapshot: rows or None when not materialised}}."""
    return {stage: {snapshot: stage_rows(store, stage, snapshot) for snapshot in snapshots} for stage in stages}


def format_funnel(table: dict[str, dict[str, int | None]], snapshots: Sequence[str]) -> str:
    width = max([len(s) for s in table] + [5])
    head = f"{'stage':<{width}}  " + "  ".join(f"{s:>16}" for s in snapshots) + f"  {'total':>10}  kept"
    lines = [head, "-" * len(head)]
    first_total: int | None = None
    for stage, per_snapshot in table.items():
        counts = [per_snapshot.get(s) for s in snapshots]
        total = sum(c for c in counts if c is not None)
        first_total = first_total if first_total is not None else total
        kept = f"{100 * total / first_total:5.1f}%" if first_total else "    -"
        cells = "  ".join(f"{c:>16,}" if c is not None else f"{'-':>16}" for c in counts)
        lines.append(f"{stage:<{width}}  {cells}  {total:>10,}  {kept}")
    return "\n".join(lines)
