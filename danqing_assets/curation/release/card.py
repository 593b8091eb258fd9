"""The dataset card (README.md at the top of a release), written from the release manifest."""

from __future__ import annotations

from .schema import RELEASE_SCHEMA


def _table(header: list[str], rows: list[list[object]]) -> list[str]:
    def cell(v: object) -> str:
        return f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v)

    return ["| " + " | ".join(header) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|",
            *("| " + " | ".join(cell(v) for v in row) + " |" for row in rows)]


def dataset_card(manifest: dict, licence_notice: str) -> str:
    version, snapshots, totals = manifest["version"], manifest["snapshots"], manifest["totals"]
    lines = [f"# danqing_assets release {version}", "",
             "Chinese image–text pairs curated from Common Crawl by the danqing_assets pipeline, following the DanQing "
             "recipe: coarse filtering → text refinement → visual filtering and near-duplicate removal → Chinese-CLIP "
             "cross-modal band and cross-snapshot dedup (earliest snapshot wins).", ""]
    if any(s.get("random_weights") for s in snapshots.values()):
        lines += ["> **WARNING: Chinese-CLIP ran on RANDOMLY INITIALISED weights for at least one snapshot.** Its "
                  "scores, the band and semantic dedup are meaningless there; this release is a pipeline test, not a "
                  "dataset.", ""]
    lines += ["## Contents", "",
              *_table(["snapshot", "pairs", "shards", "bytes", "removed by takedown"],
                      [[name, s["rows"], len(s["shards"]), s["bytes"], len(s["takedowns_removed"])]
                       for name, s in snapshots.items()]
                      + [["**total**", totals["pairs"], totals["shards"], totals["bytes"], totals["takedowns_removed"]]]),
              ""]
    if manifest.get("unpublished"):
        lines += ["Not published (a release gate failed or the snapshot is not built yet):", "",
                  *(f"- {name}: {why}" for name, why in manifest["unpublished"].items()), ""]
    lines += ["## Funnel", "", "Pairs left after each stage, per snapshot.", ""]
    stages = [stage for stage, _ in next(iter(snapshots.values()))["funnel"]] if snapshots else []
    lines += _table(["stage", *snapshots], [[stage, *(dict(s["funnel"]).get(stage, "") for s in snapshots.values())]
                                           for stage in stages]) + [""]
    lines += ["## Statistics", ""]
    keys = sorted({k for s in snapshots.values() for k in s["stats"]})
    lines += _table(["statistic", *snapshots], [[k, *(s["stats"].get(k, "") for s in snapshots.values())] for k in keys])
    lines += ["", "## Layout and schema", "",
              "Each snapshot lives in `<snapshot>/<content id>/`: `metadata.parquet` (one row per pair) and "
              "`shards/*.tar` (WebDataset: `<uid>.jpg`, `<uid>.json`, `<uid>.txt`). `manifest.json` lists every "
              "published snapshot, its files with sizes and SHA-256, and what takedowns removed; the union of the "
              "listed snapshots is the release.", "",
              *_table(["column", "type"], [[f"`{k}`", str(v)] for k, v in RELEASE_SCHEMA.items()]), "",
              "## Loading", "", "```python",
              "import webdataset as wds, polars as pl, datasets",
              "samples = wds.WebDataset(tar_paths).decode('pil').to_tuple('jpg', 'txt')",
              "meta = pl.read_parquet(parquet_paths)",
              "hf = datasets.load_dataset('parquet', data_files=parquet_paths)",
              "```", "", "## Licence", "", licence_notice, ""]
    return "\n".join(lines)
