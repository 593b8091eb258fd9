"""``dedup_index``: the cumulative cross-snapshot index — earliest snapshot wins.

Partition S holds the kept pairs (uid, snapshot, pHash, image embedding) of every registered
snapshot up to and including S. A pair of S whose image duplicates one kept in an earlier snapshot
is dropped from S (and listed, with the pair it duplicates, in the partition's drop table).

Order independence: the partition is a function of the stored ``clip_filtered_pairs`` and
``clip_embeddings`` of the snapshots ≤ S, whatever order they were materialised in. Each partition
records which upstream versions it covers; when an earlier snapshot arrives or changes later, the
later partitions no longer match it, Dagster sees them as stale (they depend on every partition of
the upstream assets) and the automation condition re-runs them.

Incremental: the newest earlier partition whose coverage still matches is reused by reference (its
manifest's parts are listed, not copied), so adding a snapshot reads the index and its own stored
embeddings only — no embedding is ever recomputed.
"""

import hashlib
import json

import dagster as dg
import numpy as np
import polars as pl

from ..asset_versions import asset_code_version, follows_upstream_and_settings
from ..curation.dedup.cross_snapshot import match_against_index
from ..curation.embed.embedder import from_binary
from ..partitions import cc_snapshots
from ..resources.storage import ObjectStore, StorageResource, read_parquet, write_parquet
from ..resources.tables import TableManifest, file_key, load_manifest, manifest_key, part_key, read_table, schema_names
from ..retries import io_retry_policy
from ..settings import get_settings
from .metadata import counter_table

ASSET = "dedup_index"
SCHEMA = {"uid": pl.String, "snapshot": pl.String, "phash": pl.Int64, "image_embedding": pl.Binary}
DROPS_SCHEMA = {"uid": pl.String, "snapshot": pl.String, "reason": pl.String,
                "duplicate_of_uid": pl.String, "duplicate_of_snapshot": pl.String}


class IndexInputError(ValueError):
    """The stored upstream data cannot form one index (missing, or embedded by different models)."""


def _upstream_version(pairs: TableManifest, embeddings: TableManifest) -> str:
    """Identifies the stored upstream data: part names carry the run that wrote them."""
    blob = json.dumps([pairs.parts, embeddings.parts], separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _snapshot_rows(store: ObjectStore, snapshot: str, pairs: TableManifest, embeddings: TableManifest) -> pl.DataFrame:
    kept = read_table(store, pairs).select("uid", "phash")
    vectors = read_table(store, embeddings).select("uid", "image_embedding")
    return (kept.join(vectors, on="uid", how="left")
            .select(pl.col("uid"), pl.lit(snapshot).alias("snapshot"), pl.col("phash").cast(pl.Int64),
                    pl.col("image_embedding"))
            .sort("uid"))


def _vectors(frame: pl.DataFrame, dim: int) -> np.ndarray:
    """Image embeddings as float32 rows; a pair without one gets a NaN row (never matches)."""
    if dim == 0 or frame.height == 0:
        return np.zeros((frame.height, max(dim, 1)), dtype=np.float32)
    blobs = frame["image_embedding"].to_list()
    filler = bytes(2 * dim)
    out = from_binary([b if b is not None else filler for b in blobs], dim).astype(np.float32)
    out[np.array([b is None for b in blobs])] = np.nan
    return out


def _hashes(frame: pl.DataFrame) -> np.ndarray:
    return frame["phash"].fill_null(0).to_numpy().astype(np.int64).view(np.uint64)


def own_rows(store: ObjectStore, index: TableManifest) -> pl.DataFrame:
    """The pairs of the index partition's own snapshot that survive cross-snapshot dedup."""
    frames = [read_parquet(store, key) for key in index.stats.get("own_parts", [])]
    frame = pl.concat(frames) if frames else pl.DataFrame(schema=SCHEMA)
    return frame.filter(pl.col("snapshot") == index.partition)


@dg.asset(
    partitions_def=cc_snapshots,
    group_name="embed",
    deps=[dg.AssetDep("clip_filtered_pairs", partition_mapping=dg.AllPartitionMapping()),
          dg.AssetDep("clip_embeddings", partition_mapping=dg.AllPartitionMapping())],
    automation_condition=follows_upstream_and_settings(),
    code_version=asset_code_version("dedup_index"),
    retry_policy=io_retry_policy(),
    description="Cumulative cross-snapshot dedup index (pHash + image embedding of kept pairs of every snapshot up to "
                "this one); a pair duplicating one kept in an earlier snapshot is dropped here.",
)
def dedup_index(context: dg.AssetExecutionContext, storage: StorageResource) -> dg.Output[TableManifest]:
    settings = get_settings()
    store = storage.store()
    snapshot = context.partition_key
    params = {"phash_max_distance": settings.phash_max_distance, "semantic_max_distance": settings.semantic_max_distance}

    # Every registered snapshot up to this one; crawl ids sort chronologically as strings.
    registered = sorted(p for p in context.instance.get_dynamic_partitions(cc_snapshots.name) if p <= snapshot)
    upstream, pending = {}, []
    for crawl in sorted(set(registered) | {snapshot}):
        pairs, embeddings = load_manifest(store, "clip_filtered_pairs", crawl), load_manifest(store, "clip_embeddings", crawl)
        if pairs is None or embeddings is None:
            if crawl == snapshot:
                raise IndexInputError(f"{snapshot}: clip_filtered_pairs and clip_embeddings must be materialised first")
            pending.append(crawl)
            continue
        upstream[crawl] = (pairs, embeddings)
    covers = {crawl: _upstream_version(*m) for crawl, m in upstream.items()}
    dims = {crawl: int(e.stats.get("dim", 0)) for crawl, (_, e) in upstream.items()}
    archs = {crawl: e.stats.get("arch") for crawl, (_, e) in upstream.items()}
    if len(set(dims.values()) - {0}) > 1 or len(set(archs.values()) - {None}) > 1:
        raise IndexInputError(f"snapshots were embedded by different models ({archs}, dims {dims}); one index needs one "
                              "embedding space — re-materialise clip_embeddings of the odd ones with the current model")
    dim = max(dims.values(), default=0)

    # Reuse the newest earlier partition that still covers exactly the current upstream data.
    base, base_snapshot = None, None
    for crawl in reversed([c for c in upstream if c < snapshot]):
        candidate = load_manifest(store, ASSET, crawl)
        expected = {c: v for c, v in covers.items() if c <= crawl}
        if (candidate is not None and candidate.stats.get("covers") == expected and candidate.stats.get("params") == params
                and all(store.exists(k) for k in candidate.parts)):
            base, base_snapshot = candidate, crawl
            break
    index = read_table(store, base) if base else pl.DataFrame(schema=SCHEMA)

    added, contributions, drops = [], {}, pl.DataFrame(schema=DROPS_SCHEMA)
    for crawl in [c for c in upstream if base_snapshot is None or c > base_snapshot]:
        rows = _snapshot_rows(store, crawl, *upstream[crawl])
        matches = match_against_index(_hashes(index), _hashes(rows), phash_max_distance=settings.phash_max_distance,
                                      index_vectors=_vectors(index, dim), new_vectors=_vectors(rows, dim),
                                      semantic_max_distance=settings.semantic_max_distance,
                                      index_uids=index["uid"].to_numpy(), new_uids=rows["uid"].to_numpy())
        kept = rows.filter(pl.Series(matches.kept))
        contributions[crawl] = {"pairs": rows.height, "kept": kept.height, "dropped": rows.height - kept.height}
        if crawl == snapshot:
            hit = np.flatnonzero(~matches.kept)
            original = index.select("uid", "snapshot")[matches.duplicate_of[hit].tolist()]
            drops = pl.DataFrame({"uid": rows["uid"][hit.tolist()], "snapshot": [snapshot] * hit.size,
                                  "reason": [matches.reason[i] for i in hit], "duplicate_of_uid": original["uid"],
                                  "duplicate_of_snapshot": original["snapshot"]}, schema=DROPS_SCHEMA)
        added.append(kept)
        index = pl.concat([index, kept])

    run = context.run.run_id[:8]
    own_key = part_key(ASSET, snapshot, f"part-00000-{run}")
    write_parquet(store, own_key, pl.concat(added) if added else pl.DataFrame(schema=SCHEMA))
    drops_key = file_key(ASSET, snapshot, f"cross_snapshot_drops-{run}.parquet")
    write_parquet(store, drops_key, drops)
    reasons = dict(drops["reason"].value_counts().iter_rows()) if drops.height else {}
    mine = contributions[snapshot]
    stats = {"covers": covers, "params": params, "own_parts": [own_key], "drops": drops_key, "dim": dim,
             "reused_index_of": base_snapshot, "pending": pending, "contributions": contributions,
             "snapshot_pairs": mine["pairs"], "snapshot_kept": mine["kept"]}
    parts = (base.parts if base else ()) + (own_key,)
    manifest = TableManifest(ASSET, snapshot, parts, index.height, schema_names(SCHEMA), stats, (drops_key,))
    if pending:
        context.log.warning(f"{snapshot}: earlier snapshots {pending} are registered but not curated yet; this index "
                            "covers the others and will be rebuilt when they arrive")
    table = ["| snapshot | pairs | kept | dropped as earlier duplicates |", "|---|---:|---:|---:|",
             *(f"| {c} | {v['pairs']:,} | {v['kept']:,} | {v['dropped']:,} |" for c, v in contributions.items())]
    metadata = {
        "dagster/row_count": dg.MetadataValue.int(index.height),
        "snapshot_pairs": mine["pairs"],
        "snapshot_kept": mine["kept"],
        "dropped_as_earlier_duplicates": mine["dropped"],
        "dropped_by_reason": dg.MetadataValue.md(counter_table(reasons, "reason", "pairs")),
        "computed_snapshots": dg.MetadataValue.md("\n".join(table)),
        "covered_snapshots": dg.MetadataValue.json(sorted(covers)),
        "reused_index_of": base_snapshot or "none",
        "pending_earlier_snapshots": dg.MetadataValue.json(pending),
        "location": dg.MetadataValue.text(store.uri(manifest_key(ASSET, snapshot))),
    }
    return dg.Output(manifest, metadata=metadata)
