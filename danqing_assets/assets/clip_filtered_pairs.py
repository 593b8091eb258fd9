"""``clip_filtered_pairs`` and ``clip_rejected_pairs``: the cross-modal band and semantic dedup.

Reads the stored embeddings; nothing is embedded again. The paper keeps pairs
whose Chinese-CLIP score lies in [1.06, 1.24] without publishing the score's
scale; we store the raw cosine and apply the band to ``cosine × DANQING_CLIP_SCORE_SCALE``
(default 4), so the paper's band corresponds to cosine 0.265–0.31. The asset page
shows the score distribution so the band can be calibrated.
"""

import dagster as dg
import numpy as np
import polars as pl

from ..asset_versions import asset_code_version, follows_upstream_and_settings
from ..curation.dedup.near_duplicates import pick_representatives
from ..curation.dedup.semantic import semantic_clusters
from ..curation.embed.clip_model import RANDOM_WEIGHTS_WARNING
from ..curation.embed.embedder import from_binary
from ..partitions import cc_snapshots
from ..resources.storage import StorageResource, write_parquet
from ..resources.tables import TableManifest, manifest_key, part_key, read_table, schema_names
from ..retries import io_retry_policy
from ..settings import get_settings
from .metadata import counter_table
from .plots import bar_chart_png, markdown_image, sparkline_png

KEPT, REJECTED = "clip_filtered_pairs", "clip_rejected_pairs"
BIN, LO, HI = 0.05, 0.0, 2.0  # histogram of the scaled score


def score_histogram(scaled: np.ndarray) -> tuple[list[str], list[int]]:
    bins = np.clip(((scaled - LO) / BIN).astype(int), 0, int((HI - LO) / BIN))
    counts = np.bincount(bins, minlength=int((HI - LO) / BIN) + 1).tolist()
    return [f"{LO + i * BIN:.2f}" for i in range(len(counts))], counts


def band_reasons(scaled: pl.Series, lo: float, hi: float) -> pl.Series:
    return pl.select(pl.when(pl.lit(scaled) < lo).then(pl.lit("clip_band:below"))
                     .when(pl.lit(scaled) > hi).then(pl.lit("clip_band:above"))).to_series()


@dg.multi_asset(
    outs={
        KEPT: dg.AssetOut(group_name="embed", code_version=asset_code_version(KEPT),
                          automation_condition=follows_upstream_and_settings(),
                          description="Pairs inside the Chinese-CLIP band, one per semantic near-duplicate cluster."),
        REJECTED: dg.AssetOut(group_name="embed", code_version=asset_code_version(REJECTED),
                          automation_condition=follows_upstream_and_settings(),
                          description="Pairs outside the band or semantic duplicates, with reason."),
    },
    ins={"image_filtered_pairs": dg.AssetIn(), "clip_embeddings": dg.AssetIn()},
    partitions_def=cc_snapshots,
    retry_policy=io_retry_policy(),
)
def clip_filtered_pairs(context: dg.AssetExecutionContext, storage: StorageResource, image_filtered_pairs: TableManifest,
                        clip_embeddings: TableManifest):
    settings = get_settings()
    store = storage.store()
    snapshot = context.partition_key
    random_weights = bool(clip_embeddings.stats.get("random_weights"))
    pairs = read_table(store, image_filtered_pairs)
    emb = read_table(store, clip_embeddings)
    joined = pairs.join(emb.select("uid", "clip_score", "image_embedding"), on="uid", how="left")
    scaled = joined["clip_score"].fill_null(float("nan")) * settings.clip_score_scale
    reason = band_reasons(scaled, settings.clip_band_min, settings.clip_band_max)
    reason = pl.select(pl.when(pl.lit(joined["clip_score"]).is_null()).then(pl.lit("clip:not_embedded"))
                       .otherwise(pl.lit(reason))).to_series()
    in_band = reason.is_null().to_numpy()
    vectors = from_binary([b if b is not None else bytes(2 * clip_embeddings.stats.get("dim", 0))
                           for b in joined["image_embedding"].to_list()]).astype(np.float32)
    if settings.semantic_max_distance >= 0:
        labels, stats = semantic_clusters(vectors, settings.semantic_max_distance, exclude=~in_band)
        semantic = stats.as_dict()
    else:  # switched off (the demo does so on random weights, where every image embeds alike)
        labels, semantic = np.arange(joined.height, dtype=np.int64), {"disabled": True}
    area = (joined["orig_width"].cast(pl.Int64) * joined["orig_height"].cast(pl.Int64)).to_numpy()
    keep = pick_representatives(labels, area=area, snapshot=[snapshot] * joined.height, uid=joined["uid"])
    reason = pl.select(pl.when(pl.lit(in_band & ~keep)).then(pl.lit("semantic_duplicate"))
                       .otherwise(pl.lit(reason))).to_series()
    judged = joined.drop("image_embedding").with_columns(reason=reason)
    kept = judged.filter(pl.col("reason").is_null()).drop("reason")
    rejected = judged.filter(pl.col("reason").is_not_null())
    run = context.run.run_id[:8]
    kept_key, rejected_key = part_key(KEPT, snapshot, f"part-00000-{run}"), part_key(REJECTED, snapshot, f"part-00000-{run}")
    write_parquet(store, kept_key, kept)
    write_parquet(store, rejected_key, rejected)
    reasons = dict(rejected["reason"].value_counts().iter_rows())
    steps = [["clip_band", pairs.height, pairs.height - sum(v for k, v in reasons.items() if k.startswith("clip"))]]
    steps.append(["semantic_dedup", steps[0][2], kept.height])
    summary = {"rows_in": pairs.height, "rows_out": kept.height, "steps": steps, "reasons": reasons,
               "random_weights": random_weights, "semantic": semantic,
               "band": [settings.clip_band_min, settings.clip_band_max], "score_scale": settings.clip_score_scale}
    labels_, counts = score_histogram(np.nan_to_num(scaled.to_numpy(), nan=-1.0))
    band = f"band [{settings.clip_band_min}, {settings.clip_band_max}] on {settings.clip_score_scale:g} × cosine"
    chart = bar_chart_png(labels_, counts, f"Chinese-CLIP score ({settings.clip_score_scale:g} x cosine), {snapshot}; {band}")
    warning = "RANDOM WEIGHTS — these scores are meaningless. " if random_weights else ""
    inline = markdown_image(sparkline_png(counts), "CLIP score distribution") + (
        f"\n\n{warning}scaled score 0–2 in bins of {BIN}; {band}")
    metadata = {
        "dagster/row_count": dg.MetadataValue.int(kept.height),
        "rows_in": pairs.height,
        "funnel": dg.MetadataValue.md("\n".join(["| step | in | out |", "|---|---:|---:|",
                                                 *(f"| {n} | {a:,} | {b:,} |" for n, a, b in steps)])),
        "dropped_by_reason": dg.MetadataValue.md(counter_table(reasons, "reason", "pairs")),
        "score_distribution": dg.MetadataValue.md(inline),
        "score_chart": dg.MetadataValue.md(markdown_image(chart, "CLIP score chart")),
        "semantic_clusters_with_duplicates": int(np.sum(np.bincount(labels[labels >= 0]) > 1)) if labels.size else 0,
        "random_weights": random_weights,
        "location": dg.MetadataValue.text(store.uri(manifest_key(KEPT, snapshot))),
    }
    if random_weights:
        metadata["WARNING"] = dg.MetadataValue.md(f"**{RANDOM_WEIGHTS_WARNING}**")
    yield dg.Output(TableManifest(KEPT, snapshot, (kept_key,), kept.height, schema_names(dict(kept.schema)), summary),
                    output_name=KEPT, metadata=metadata)
    yield dg.Output(TableManifest(REJECTED, snapshot, (rejected_key,), rejected.height, schema_names(dict(rejected.schema)),
                                  {"reasons": reasons}),
                    output_name=REJECTED, metadata={"dagster/row_count": dg.MetadataValue.int(rejected.height),
                                                    "dropped_by_reason": dg.MetadataValue.md(counter_table(reasons, "reason", "pairs"))})
