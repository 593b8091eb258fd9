"""``clip_embeddings``: Chinese-CLIP image and text embeddings of the image-filtered pairs.

The only GPU step. Embeddings are computed once, L2-normalised and stored as
float16 with the raw cosine score, so changing a threshold downstream never
recomputes them.
"""

import time
from collections.abc import Iterator
from contextlib import closing

import dagster as dg
import polars as pl

from ..asset_versions import asset_code_version, follows_upstream_and_settings
from ..curation.embed.clip_model import RANDOM_WEIGHTS_WARNING
from ..curation.embed.embedder import Embeddings, embed_parts, to_binary
from ..gpu import GPU_POOL, gpu_op_tags
from ..partitions import cc_snapshots
from ..progress import Progress
from ..resources.clip import ClipModelResource
from ..resources.shards import read_members
from ..resources.storage import ObjectStore, StorageResource, write_parquet
from ..resources.tables import TableManifest, iter_parts, manifest_key, part_key, schema_names
from ..retries import io_retry_policy

ASSET = "clip_embeddings"
SCHEMA = {"uid": pl.String, "image_uid": pl.String, "clip_score": pl.Float32,
          "image_embedding": pl.Binary, "text_embedding": pl.Binary}


def image_bytes(store: ObjectStore, pairs: pl.DataFrame) -> list[bytes]:
    """The stored JPEG of every pair, reading each shard once."""
    blobs: dict[tuple[str, str], bytes] = {}
    for (shard,), group in pairs.group_by(["shard"]):
        for member, data in read_members(store, shard, set(group["member"])).items():
            blobs[(shard, member)] = data
    return [blobs[(s, m)] for s, m in pairs.select("shard", "member").iter_rows()]


def pairs_to_embed(store: ObjectStore, manifest: TableManifest) -> Iterator[tuple[pl.DataFrame, list[bytes], list[str]]]:
    """Part by part: the pairs (as the label that comes back with the embeddings), their images and texts."""
    for pairs in iter_parts(store, manifest):
        yield pairs, image_bytes(store, pairs), pairs["text"].to_list()


def embedding_frame(pairs: pl.DataFrame, emb: Embeddings) -> pl.DataFrame:
    return pl.DataFrame({"uid": pairs["uid"], "image_uid": pairs["image_uid"], "clip_score": emb.score,
                         "image_embedding": to_binary(emb.image), "text_embedding": to_binary(emb.text)}, schema=SCHEMA)


@dg.asset(
    partitions_def=cc_snapshots,
    group_name="embed",
    ins={"image_filtered_pairs": dg.AssetIn()},
    op_tags=gpu_op_tags(),
    pool=GPU_POOL,
    code_version=asset_code_version(ASSET),
    automation_condition=follows_upstream_and_settings(),
    retry_policy=io_retry_policy(),
    description="Chinese-CLIP image and text embeddings (float16, L2-normalised) and the raw cosine score per pair.",
)
def clip_embeddings(context: dg.AssetExecutionContext, storage: StorageResource, clip_model: ClipModelResource,
                    image_filtered_pairs: TableManifest) -> dg.Output[TableManifest]:
    store = storage.store()
    snapshot = context.partition_key
    clip = clip_model.load()
    if clip.random_weights:
        context.log.warning(RANDOM_WEIGHTS_WARNING)
    progress = Progress(context, "clip_embeddings", "pairs", image_filtered_pairs.rows)
    parts, rows, model_s, total_s = [], 0, 0.0, 0.0
    started = time.perf_counter()
    # one embed_parts for the whole step: its loader processes start once and read ahead across parts;
    # closing() stops them at once should writing a part fail
    with closing(embed_parts(clip, pairs_to_embed(store, image_filtered_pairs), batch_size=clip_model.batch_size,
                             workers=clip_model.loader_workers)) as embedded:
        for index, (pairs, emb) in enumerate(embedded):
            frame = embedding_frame(pairs, emb)
            key = part_key(ASSET, snapshot, f"part-{index:05d}-{context.run.run_id[:8]}")
            write_parquet(store, key, frame)
            parts.append(key)
            rows += frame.height
            model_s, total_s = model_s + emb.seconds_model, total_s + emb.seconds_total
            progress.advance(frame.height)
    elapsed = time.perf_counter() - started
    manifest = TableManifest(ASSET, snapshot, tuple(parts), rows, schema_names(SCHEMA),
                             {"arch": clip.arch, "random_weights": clip.random_weights, "source": clip.source,
                              "device": str(clip.device), "dim": int(clip.model.text_projection.shape[1])})
    metadata = {
        "dagster/row_count": dg.MetadataValue.int(rows),
        "model": f"Chinese-CLIP {clip.arch} ({clip.source})",
        "random_weights": clip.random_weights,
        "device": str(clip.device),
        "pairs_per_second": round(rows / elapsed, 2) if elapsed else 0.0,
        "model_share_of_time": round(model_s / total_s, 3) if total_s else 0.0,
        "location": dg.MetadataValue.text(store.uri(manifest_key(ASSET, snapshot))),
    }
    if clip.random_weights:
        metadata["WARNING"] = dg.MetadataValue.md(f"**{RANDOM_WEIGHTS_WARNING}**")
    return dg.Output(manifest, metadata=metadata)
