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

Memory: the index is read part by part; per row only its uid, snapshot and pHash stay in memory (~50
bytes). Embeddings (1.5 KB a row: ~150 GB for 100M index rows) go to scratch files (:class:`VectorFile`,
float16), searched block by block with their pages released as they go (:mod:`..curation.dedup.cross_snapshot`),
and only when semantic matching is on; a snapshot's own rows are written :data:`OWN_PART_ROWS` at a time,
so the parts a later run reads stay small.
"""

import hashlib
import json
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import dagster as dg
import numpy as np
import polars as pl

from ..asset_versions import asset_code_version, follows_upstream_and_settings
from ..curation.dedup.cross_snapshot import CrossSnapshotMatches, match_against_index
from ..curation.embed.embedder import from_binary, to_binary
from ..curation.embed.vector_file import VectorFile, drop_resident_pages
from ..partitions import cc_snapshots
from ..resources.storage import ObjectStore, StorageResource, read_parquet, write_parquet
from ..resources.tables import TableManifest, file_key, load_manifest, manifest_key, part_key, schema_names
from ..retries import io_retry_policy
from ..settings import get_settings
from .metadata import counter_table

ASSET = "dedup_index"
SCHEMA = {"uid": pl.String, "snapshot": pl.String, "phash": pl.Int64, "image_embedding": pl.Binary}
DROPS_SCHEMA = {"uid": pl.String, "snapshot": pl.String, "reason": pl.String,
                "duplicate_of_uid": pl.String, "duplicate_of_snapshot": pl.String}
OWN_PART_ROWS = 32_768
"""Rows per written part: a later run reads the index part by part, so this bounds its memory (~50 MB of
768-d float16 embeddings a part)."""
GATHER_ROWS = 16_384
"""Embedding rows copied between scratch files at a time."""


class IndexInputError(ValueError):
    """The stored upstream data cannot form one index (missing, or embedded by different models)."""


def _upstream_version(pairs: TableManifest, embeddings: TableManifest) -> str:
    """Identifies the stored upstream data: part names carry the run that wrote them."""
    blob = json.dumps([pairs.parts, embeddings.parts], separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _embedding_rows(blobs: pl.Series, dim: int) -> np.ndarray:
    """Image embeddings as float16 rows; a pair without one gets a NaN row (never matches)."""
    out = np.full((blobs.len(), dim), np.nan, dtype=np.float16)
    present = blobs.is_not_null().to_numpy()
    if present.any():
        out[present] = from_binary(blobs.filter(blobs.is_not_null()).to_list(), dim)
    return out


def _hashes(frame: pl.DataFrame) -> np.ndarray:
    return frame["phash"].fill_null(0).to_numpy().astype(np.int64).view(np.uint64)


@dataclass
class _Index:
    """The cumulative index as a run holds it: uid, snapshot and pHash per row in memory; the image embeddings
    (only when semantic matching is on) in read-only scratch-file segments, concatenated in row order."""

    rows: pl.DataFrame
    phash: np.ndarray
    segments: list[np.ndarray] | None

    def extend(self, kept: "_Snapshot") -> None:
        self.rows = pl.concat([self.rows, kept.rows.select("uid", "snapshot")])
        self.phash = np.concatenate([self.phash, _hashes(kept.rows)])
        if self.segments is not None:
            self.segments.append(kept.vectors)


@dataclass
class _Snapshot:
    """One snapshot's pairs sorted by uid: (uid, snapshot, phash) in memory; embeddings in a scratch file
    (NaN rows where a pair has none, recorded in ``embedded``)."""

    rows: pl.DataFrame
    vectors: np.ndarray | None
    embedded: np.ndarray


def _read_index(store: ObjectStore, base: TableManifest | None, dim: int, files: ExitStack) -> _Index:
    """The base index part by part: ~50 bytes a row kept in memory, embeddings spilled to a scratch file."""
    vectors = files.enter_context(VectorFile(dim)) if dim else None
    rows, hashes = [pl.DataFrame(schema={"uid": pl.String, "snapshot": pl.String})], [np.zeros(0, dtype=np.uint64)]
    for key in base.parts if base else ():
        part = read_parquet(store, key, columns=["uid", "snapshot", "phash"] + (["image_embedding"] if vectors else []))
        rows.append(part.select("uid", "snapshot"))
        hashes.append(_hashes(part))
        if vectors is not None:
            vectors.append(_embedding_rows(part["image_embedding"], dim))
    return _Index(pl.concat(rows), np.concatenate(hashes), [vectors.array()] if vectors else None)


def _snapshot_rows(store: ObjectStore, snapshot: str, pairs: TableManifest, embeddings: TableManifest, dim: int,
                   files: ExitStack) -> _Snapshot:
    kept = [read_parquet(store, key, columns=["uid", "phash"]) for key in pairs.parts]
    rows = (pl.concat(kept) if kept else pl.DataFrame(schema={"uid": pl.String, "phash": pl.Int64})).select(
        pl.col("uid"), pl.lit(snapshot).alias("snapshot"), pl.col("phash").cast(pl.Int64)).sort("uid")
    if not dim:
        return _Snapshot(rows, None, np.zeros(rows.height, dtype=bool))
    with VectorFile(dim) as staging:
        position = _stage_embeddings(store, rows, embeddings, staging)
        return _Snapshot(rows, _in_row_order(staging.array(), position, files), position >= 0)


def _stage_embeddings(store: ObjectStore, rows: pl.DataFrame, embeddings: TableManifest, staging: VectorFile) -> np.ndarray:
    """Append the snapshot's embeddings to ``staging`` in the order its parts hold them; per row (in ``rows``
    order), where its embedding went (-1: none)."""
    row_of_uid = rows.select("uid").with_row_index("row")
    found = []
    for key in embeddings.parts:
        part = (read_parquet(store, key, columns=["uid", "image_embedding"]).join(row_of_uid, on="uid", how="inner")
                .filter(pl.col("image_embedding").is_not_null()))
        staging.append(from_binary(part["image_embedding"].to_list(), staging.dim).reshape(-1, staging.dim))
        found.append(part["row"].to_numpy())
    position = np.full(rows.height, -1, dtype=np.int64)
    hit = np.concatenate(found) if found else np.zeros(0, dtype=np.int64)
    position[hit] = np.arange(hit.size)
    return position


def _in_row_order(staged: np.ndarray, position: np.ndarray, files: ExitStack) -> np.ndarray:
    """Copy staged embeddings into row order, a batch at a time (NaN rows where a pair has none)."""
    ordered = files.enter_context(VectorFile(staged.shape[1]))
    for start in range(0, position.size, GATHER_ROWS):
        where = position[start:start + GATHER_ROWS]
        block = np.full((where.size, staged.shape[1]), np.nan, dtype=np.float16)
        block[where >= 0] = staged[where[where >= 0]]
        ordered.append(block)
        drop_resident_pages(staged)
    return ordered.array()


def _kept_rows(snapshot: _Snapshot, kept: np.ndarray, dim: int, files: ExitStack) -> _Snapshot:
    """The kept pairs of a snapshot, their embeddings copied to a scratch file of their own (a new index segment)."""
    rows = snapshot.rows.filter(pl.Series(kept))
    if snapshot.vectors is None:
        return _Snapshot(rows, None, snapshot.embedded[kept])
    segment = files.enter_context(VectorFile(dim))
    chosen = np.flatnonzero(kept)
    for start in range(0, chosen.size, GATHER_ROWS):
        segment.append(snapshot.vectors[chosen[start:start + GATHER_ROWS]])
        drop_resident_pages(snapshot.vectors)
    return _Snapshot(rows, segment.array(), snapshot.embedded[kept])


def _with_embeddings(kept: _Snapshot, start: int, stop: int) -> pl.DataFrame:
    """Rows start..stop of a snapshot's kept pairs, with their embeddings back as the stored Binary values."""
    blobs = [None] * (stop - start)
    if kept.vectors is not None:
        blobs = [b if has else None for b, has in zip(to_binary(kept.vectors[start:stop]), kept.embedded[start:stop])]
        drop_resident_pages(kept.vectors)
    return kept.rows[start:stop].with_columns(pl.Series("image_embedding", blobs, dtype=pl.Binary))


def _own_frames(added: list[_Snapshot]) -> Iterator[pl.DataFrame]:
    """The kept pairs of the snapshots computed here, in order, OWN_PART_ROWS at a time (one empty frame if none)."""
    buffered, size, written = [], 0, False
    for kept in added:
        start = 0
        while start < kept.rows.height:
            take = min(OWN_PART_ROWS - size, kept.rows.height - start)
            buffered.append(_with_embeddings(kept, start, start + take))
            size, start = size + take, start + take
            if size == OWN_PART_ROWS:
                yield pl.concat(buffered)
                buffered, size, written = [], 0, True
    if buffered or not written:
        yield pl.concat(buffered) if buffered else pl.DataFrame(schema=SCHEMA)


def _write_own_parts(store: ObjectStore, snapshot: str, run: str, added: list[_Snapshot]) -> list[str]:
    keys = []
    for number, frame in enumerate(_own_frames(added)):
        keys.append(part_key(ASSET, snapshot, f"part-{number:05d}-{run}"))
        write_parquet(store, keys[-1], frame)
    return keys


def _drops(index: _Index, rows: _Snapshot, matches: CrossSnapshotMatches, snapshot: str) -> pl.DataFrame:
    """The snapshot's pairs dropped as duplicates of earlier ones, with the pair each duplicates."""
    hit = np.flatnonzero(~matches.kept)
    original = index.rows[matches.duplicate_of[hit].tolist()]
    return pl.DataFrame({"uid": rows.rows["uid"][hit.tolist()], "snapshot": [snapshot] * hit.size,
                         "reason": [matches.reason[i] for i in hit], "duplicate_of_uid": original["uid"],
                         "duplicate_of_snapshot": original["snapshot"]}, schema=DROPS_SCHEMA)


def own_rows(store: ObjectStore, index: TableManifest) -> pl.DataFrame:
    """The pairs of the index partition's own snapshot that survive cross-snapshot dedup."""
    frames = [read_parquet(store, key).filter(pl.col("snapshot") == index.partition)
              for key in index.stats.get("own_parts", [])]
    return pl.concat(frames) if frames else pl.DataFrame(schema=SCHEMA)


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
    semantic = settings.semantic_max_distance >= 0
    with ExitStack() as files:  # scratch files of embeddings, removed when the step ends
        index = _read_index(store, base, dim if semantic else 0, files)
        added, contributions, drops = [], {}, pl.DataFrame(schema=DROPS_SCHEMA)
        for crawl in [c for c in upstream if base_snapshot is None or c > base_snapshot]:
            with ExitStack() as scratch:  # all of the snapshot's embeddings: only until its kept ones are copied
                rows = _snapshot_rows(store, crawl, *upstream[crawl], dim, scratch)
                matches = match_against_index(index.phash, _hashes(rows.rows),
                                              phash_max_distance=settings.phash_max_distance,
                                              index_vectors=index.segments, new_vectors=rows.vectors,
                                              semantic_max_distance=settings.semantic_max_distance,
                                              index_uids=index.rows["uid"], new_uids=rows.rows["uid"])
                kept = _kept_rows(rows, matches.kept, dim, files)
            contributions[crawl] = {"pairs": rows.rows.height, "kept": kept.rows.height,
                                    "dropped": rows.rows.height - kept.rows.height}
            if crawl == snapshot:
                drops = _drops(index, rows, matches, snapshot)
            added.append(kept)
            index.extend(kept)

        run = context.run.run_id[:8]
        own_keys = _write_own_parts(store, snapshot, run, added)
    drops_key = file_key(ASSET, snapshot, f"cross_snapshot_drops-{run}.parquet")
    write_parquet(store, drops_key, drops)
    reasons = dict(drops["reason"].value_counts().iter_rows()) if drops.height else {}
    mine = contributions[snapshot]
    stats = {"covers": covers, "params": params, "own_parts": own_keys, "drops": drops_key, "dim": dim,
             "reused_index_of": base_snapshot, "pending": pending, "contributions": contributions,
             "snapshot_pairs": mine["pairs"], "snapshot_kept": mine["kept"]}
    parts = (base.parts if base else ()) + tuple(own_keys)
    manifest = TableManifest(ASSET, snapshot, parts, index.rows.height, schema_names(SCHEMA), stats, (drops_key,))
    if pending:
        context.log.warning(f"{snapshot}: earlier snapshots {pending} are registered but not curated yet; this index "
                            "covers the others and will be rebuilt when they arrive")
    table = ["| snapshot | pairs | kept | dropped as earlier duplicates |", "|---|---:|---:|---:|",
             *(f"| {c} | {v['pairs']:,} | {v['kept']:,} | {v['dropped']:,} |" for c, v in contributions.items())]
    metadata = {
        "dagster/row_count": dg.MetadataValue.int(index.rows.height),
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
