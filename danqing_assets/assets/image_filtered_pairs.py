"""``image_filtered_pairs`` and ``image_rejected_pairs``: the paper's visual filters and
near-duplicate removal within a snapshot, read from the stored measurements.

Nothing is decoded again here: the download step measured every image (size,
grey std, Laplacian variance, entropy, pHash), so changing a threshold re-runs
only this asset. Near-duplicates are clustered over all the snapshot's images
(every shard); one image per cluster is kept (largest, then earliest snapshot,
then uid), and one pair per kept image (smallest pair uid).
"""

import io
from collections import Counter

import dagster as dg
import numpy as np
import polars as pl
from PIL import Image

from ..asset_versions import asset_code_version, follows_upstream_and_settings
from ..curation.dedup.near_duplicates import cluster_near_duplicates, degenerate_hashes, pick_representatives
from ..curation.images.visual_filters import (
    VisualFilterConfig,
    load_image_classifier,
    safety_reject_reasons,
    visual_reject_reasons,
)
from ..partitions import cc_snapshots
from ..resources.shards import read_members
from ..resources.storage import ObjectStore, StorageResource, write_parquet
from ..resources.tables import TableManifest, iter_parts, manifest_key, part_key, read_table, schema_names
from ..retries import io_retry_policy
from ..settings import Settings, get_settings
from .metadata import counter_table
from .plots import contact_sheet_jpeg, markdown_image

KEPT, REJECTED = "image_filtered_pairs", "image_rejected_pairs"
IMAGE_COLUMNS = ["url", "image_uid", "shard", "member", "width", "height", "orig_width", "orig_height", "sha256",
                 "phash", "pixel_std", "laplacian_var", "entropy"]
STEPS = [("image_downloaded", "download:"), ("visual_filters", "visual:"), ("image_safety", "unsafe_image"),
         ("near_duplicates", "near_duplicate"), ("one_pair_per_image", "same_image_other_caption")]


def judge_images(images: pl.DataFrame, settings: Settings, store: ObjectStore, snapshot: str) -> pl.DataFrame:
    """Per image: ``image_reason`` (null = usable), ``cluster`` and ``cluster_size``."""
    visual = visual_reject_reasons(images, VisualFilterConfig.from_settings(settings))
    reason = pl.select(pl.when(pl.lit(visual).is_not_null()).then(pl.lit("visual:") + pl.lit(visual))).to_series()
    images = images.with_columns(image_reason=reason)
    if settings.image_safety_classifier:
        images = _apply_safety(images, settings, store)
    usable = images["image_reason"].is_null().to_numpy()
    hashes = images["phash"].to_numpy().astype(np.int64).view(np.uint64)
    # Unusable images take no part in clustering: as links they would chain usable images together.
    labels = cluster_near_duplicates(hashes, settings.phash_max_distance, exclude=~usable | degenerate_hashes(hashes))
    area = (images["orig_width"].cast(pl.Int64) * images["orig_height"].cast(pl.Int64)).to_numpy()
    representative = pick_representatives(labels, area=area, snapshot=[snapshot] * images.height, uid=images["image_uid"])
    clusters = pl.DataFrame({"cluster": labels})
    cluster_size = clusters.join(clusters.group_by("cluster").len(), on="cluster", how="left")["len"]
    near = usable & ~representative
    return images.with_columns(
        image_reason=pl.when(pl.lit(near)).then(pl.lit("near_duplicate")).otherwise(pl.col("image_reason")),
        cluster=pl.Series(labels),
        cluster_size=cluster_size.cast(pl.Int32),
    )


def _apply_safety(images: pl.DataFrame, settings: Settings, store: ObjectStore) -> pl.DataFrame:
    classifier = load_image_classifier(settings.image_safety_classifier, settings.image_safety_model_path)
    todo = images.filter(pl.col("image_reason").is_null())
    scores: dict[str, float] = {}
    for (shard,), group in todo.group_by(["shard"]):
        members = read_members(store, shard, set(group["member"]))
        pictures = [Image.open(io.BytesIO(members[m])).convert("RGB") for m in group["member"]]
        scores.update(zip(group["image_uid"], classifier.unsafe_scores_from_pixels(pictures)))
    flagged = safety_reject_reasons([scores.get(u, 0.0) for u in images["image_uid"]], settings.image_safety_threshold)
    return images.with_columns(image_reason=pl.coalesce(pl.col("image_reason"), pl.lit(flagged)))


def chosen_pairs(store: ObjectStore, text_pairs: TableManifest, images: pl.DataFrame) -> set[str]:
    """The uid of the one pair kept per usable image: the smallest uid among its pairs.

    Aggregated part by part (the minimum of the minima): what is held is one row per usable image, never
    the pairs of all parts.
    """
    usable = images.filter(pl.col("image_reason").is_null()).select("url")
    smallest: pl.DataFrame | None = None
    for part in iter_parts(store, text_pairs, ["url", "uid"]):
        found = part.select("url", "uid").join(usable, on="url")  # the column order of the aggregate
        frames = [found] if smallest is None else [smallest, found]
        smallest = pl.concat(frames).group_by("url").agg(pl.col("uid").min())
    return set() if smallest is None else set(smallest["uid"].to_list())


def judge_pairs(pairs: pl.DataFrame, images: pl.DataFrame, failures: pl.DataFrame, chosen: set[str]) -> pl.DataFrame:
    joined = pairs.join(images.select(*IMAGE_COLUMNS, "image_reason", "cluster_size"), on="url", how="left")
    joined = joined.join(failures.select("url", failure=pl.col("reason")), on="url", how="left")
    reason = (
        pl.when(pl.col("image_uid").is_null())
        .then(pl.lit("download:") + pl.coalesce(pl.col("failure"), pl.lit("missing")))
        .when(pl.col("image_reason").is_not_null())
        .then(pl.col("image_reason"))
        .when(~pl.col("uid").is_in(list(chosen)))
        .then(pl.lit("same_image_other_caption"))
    )
    return joined.with_columns(reason=reason).drop("failure", "image_reason")


def funnel(reasons: Counter, rows_in: int) -> list[list]:
    steps, remaining = [], rows_in
    for name, prefix in STEPS:
        dropped = sum(v for k, v in reasons.items() if k.startswith(prefix))
        steps.append([name, remaining, remaining - dropped])
        remaining -= dropped
    return steps


def sheets(store: ObjectStore, kept: pl.DataFrame, rejected: pl.DataFrame) -> str:
    rows = [("kept", kept.head(8))]
    with_image = rejected.filter(pl.col("shard").is_not_null())
    for reason in sorted(set(with_image["reason"].to_list())):
        rows.append((reason, with_image.filter(pl.col("reason") == reason).head(8)))
    wanted = pl.concat([frame.select("shard", "member") for _, frame in rows])
    blobs: dict[tuple[str, str], bytes] = {}
    for (shard,), group in wanted.group_by(["shard"]):
        for member, data in read_members(store, shard, set(group["member"])).items():
            blobs[(shard, member)] = data
    pictures = [(label, [Image.open(io.BytesIO(blobs[(s, m)])) for s, m in frame.select("shard", "member").iter_rows()])
                for label, frame in rows]
    return markdown_image(contact_sheet_jpeg(pictures), "kept images and rejects per reason", "image/jpeg")


@dg.multi_asset(
    outs={
        KEPT: dg.AssetOut(group_name="images", code_version=asset_code_version(KEPT),
                          automation_condition=follows_upstream_and_settings(),
                          description="Pairs whose image passed the visual filters, one per near-duplicate cluster."),
        REJECTED: dg.AssetOut(group_name="images", code_version=asset_code_version(REJECTED),
                          automation_condition=follows_upstream_and_settings(),
                          description="Pairs the image stage dropped, with reason."),
    },
    ins={"text_filtered_pairs": dg.AssetIn(), "downloaded_images": dg.AssetIn(), "image_download_failures": dg.AssetIn()},
    partitions_def=cc_snapshots,
    retry_policy=io_retry_policy(),
)
def image_filtered_pairs(context: dg.AssetExecutionContext, storage: StorageResource, text_filtered_pairs: TableManifest,
                         downloaded_images: TableManifest, image_download_failures: TableManifest):
    settings = get_settings()
    store = storage.store()
    snapshot = context.partition_key
    run = context.run.run_id[:8]
    images = read_table(store, downloaded_images, IMAGE_COLUMNS).unique("url", keep="first", maintain_order=True)
    images = judge_images(images, settings, store, snapshot)
    failures = read_table(store, image_download_failures, ["url", "reason"])
    failures = failures.unique("url", keep="last", maintain_order=True)
    chosen = chosen_pairs(store, text_filtered_pairs, images)
    reasons: Counter = Counter()
    kept_parts, rejected_parts, kept_frames, rejected_frames = [], [], [], []
    rows_in = rows_out = 0
    for index, pairs in enumerate(iter_parts(store, text_filtered_pairs)):
        judged = judge_pairs(pairs, images, failures, chosen)
        kept, rejected = judged.filter(pl.col("reason").is_null()).drop("reason"), judged.filter(pl.col("reason").is_not_null())
        reasons.update(rejected["reason"].to_list())
        rows_in, rows_out = rows_in + pairs.height, rows_out + kept.height
        for frame, asset, parts in ((kept, KEPT, kept_parts), (rejected, REJECTED, rejected_parts)):
            key = part_key(asset, snapshot, f"part-{index:05d}-{run}")
            write_parquet(store, key, frame)
            parts.append(key)
        kept_frames.append(kept.head(8))
        rejected_frames.append(rejected.group_by("reason").head(8))
        kept_schema, rejected_schema = dict(kept.schema), dict(rejected.schema)
    steps = funnel(reasons, rows_in)
    stats = {"rows_in": rows_in, "rows_out": rows_out, "steps": steps, "reasons": dict(sorted(reasons.items())),
             "clusters_with_duplicates": int((images["cluster_size"] > 1).sum())}
    kept_manifest = TableManifest(KEPT, snapshot, tuple(kept_parts), rows_out, schema_names(kept_schema) if kept_parts else {}, stats)
    rejected_manifest = TableManifest(REJECTED, snapshot, tuple(rejected_parts), rows_in - rows_out,
                                      schema_names(rejected_schema) if rejected_parts else {}, {"reasons": stats["reasons"]})
    funnel_md = "\n".join(["| step | in | out | dropped |", "|---|---:|---:|---:|",
                           *(f"| {n} | {a:,} | {b:,} | {a - b:,} |" for n, a, b in steps)])
    sample_kept = pl.concat(kept_frames) if kept_frames else pl.DataFrame()
    sample_rejected = pl.concat(rejected_frames) if rejected_frames else pl.DataFrame()
    contact = sheets(store, sample_kept, sample_rejected) if sample_kept.height or sample_rejected.height else "_no images_"
    yield dg.Output(kept_manifest, output_name=KEPT, metadata={
        "dagster/row_count": dg.MetadataValue.int(rows_out),
        "rows_in": rows_in,
        "funnel": dg.MetadataValue.md(funnel_md),
        "dropped_by_reason": dg.MetadataValue.md(counter_table(reasons, "reason", "pairs")),
        "near_duplicate_clusters": int(images.filter(pl.col("cluster_size") > 1)["cluster"].n_unique()),
        "contact_sheet": dg.MetadataValue.md(contact),
        "filters": dg.MetadataValue.json({**VisualFilterConfig.from_settings(settings).params(),
                                          "phash_max_distance": settings.phash_max_distance,
                                          "safety_classifier": settings.image_safety_classifier}),
        "location": dg.MetadataValue.text(store.uri(manifest_key(KEPT, snapshot))),
    })
    yield dg.Output(rejected_manifest, output_name=REJECTED, metadata={
        "dagster/row_count": dg.MetadataValue.int(rejected_manifest.rows),
        "dropped_by_reason": dg.MetadataValue.md(counter_table(reasons, "reason", "pairs")),
    })
