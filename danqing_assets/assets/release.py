"""The release: ``takedown_list``, ``release`` (per snapshot, gated) and ``release_manifest`` (the union).

Layout in the object store (``v1`` is ``DANQING_RELEASE_VERSION``)::

    releases/v1/manifest.json                      the published release: every snapshot's files, totals, takedowns
    releases/v1/README.md                          the dataset card
    releases/v1/<snapshot>/_manifest.json          the snapshot's latest built release (staged until its gates pass)
    releases/v1/<snapshot>/<content id>/metadata.parquet, shards/<snapshot>-00000.tar, _gates.json

A snapshot's files live under a directory named by a hash of its metadata, so rebuilding the same
content rewrites identical bytes at the same keys, and a changed release never overwrites the one
readers may be using: ``release_manifest`` switches the published entry to the new directory only
when all its gates passed, then deletes directories nothing refers to. Takedowns re-run ``release``
from the stored curated pairs and images: nothing is downloaded or embedded again.
"""

import hashlib
import io
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import dagster as dg
import polars as pl
from PIL import Image

from ..asset_versions import asset_code_version, follows_upstream_and_settings
from ..curation.embed.clip_model import RANDOM_WEIGHTS_WARNING
from ..curation.release.card import dataset_card
from ..curation.release.gates import GATES, GateResult, inspect_shards, run_gates
from ..curation.release.schema import IMAGE_EXT, JSON_FIELDS, RELEASE_SCHEMA, release_frame
from ..curation.release.takedowns import TAKEDOWN_SCHEMA, Takedowns, parse_takedown_list, takedown_rules
from ..partitions import cc_snapshots
from ..resources.shards import ShardWriter, read_members
from ..resources.storage import ObjectNotFound, ObjectStore, StorageResource, get_json, put_json, read_parquet
from ..resources.tables import TableManifest, load_manifest, part_key, read_table, schema_names
from ..retries import io_retry_policy
from ..settings import get_settings
from .dedup_index import own_rows
from .metadata import counter_table
from .plots import contact_sheet_jpeg, markdown_image

FUNNEL_ASSETS = [("raw_pairs", "raw pairs"), ("text_filtered_pairs", "text filters"),
                 ("image_filtered_pairs", "image filters + pHash dedup"), ("clip_filtered_pairs", "CLIP band + semantic dedup")]


def release_root(version: str) -> str:
    return f"releases/{version}"


def staged_key(version: str, snapshot: str) -> str:
    return f"{release_root(version)}/{snapshot}/_manifest.json"


def load_staged(store: ObjectStore, version: str, snapshot: str) -> TableManifest | None:
    try:
        return TableManifest.from_dict(get_json(store, staged_key(version, snapshot)))
    except ObjectNotFound:
        return None


def load_takedowns(store: ObjectStore) -> tuple[Takedowns, str]:
    manifest = load_manifest(store, "takedown_list", "_all")
    if manifest is None:
        raise dg.Failure("takedown_list has not been materialised: materialise it (an empty list is fine) before a "
                         "release, so that no taken-down item is ever published")
    return Takedowns.from_frame(read_table(store, manifest)), manifest.stats["version"]


# --- takedown_list ---------------------------------------------------------------------------------


@dg.asset(group_name="release", code_version=asset_code_version("takedown_list"),
          automation_condition=follows_upstream_and_settings(), retry_policy=io_retry_policy(),
          description="The takedown list (URLs, domains, image hashes) every release must honour.")
def takedown_list(context: dg.AssetExecutionContext, storage: StorageResource) -> dg.Output[TableManifest]:
    settings = get_settings()
    path = settings.takedown_list_path
    text = Path(path).read_text(encoding="utf-8") if path else ""
    takedowns = parse_takedown_list(text)
    frame = takedowns.to_frame()
    version = hashlib.sha256(frame.write_csv().encode()).hexdigest()[:16]
    store = storage.store()
    key = part_key("takedown_list", "_all", f"entries-{version}")
    buffer = io.BytesIO()
    frame.write_parquet(buffer, compression="zstd")
    store.put_bytes(key, buffer.getvalue())
    counts = dict(frame["kind"].value_counts().iter_rows()) if frame.height else {}
    return dg.Output(
        TableManifest("takedown_list", "_all", (key,), frame.height, schema_names(TAKEDOWN_SCHEMA),
                      {"version": version, "source": str(path or "")}),
        metadata={"entries": dg.MetadataValue.int(frame.height), "version": version,
                  "source": str(path) if path else "none configured (DANQING_TAKEDOWN_LIST_PATH): empty list",
                  "entries_by_kind": dg.MetadataValue.md(counter_table(counts, "kind", "entries") if counts else "_empty list_")})


# --- release (per snapshot) -------------------------------------------------------------------------


def _images(store: ObjectStore, rows: pl.DataFrame) -> Iterator[bytes]:
    """Image bytes of ``rows`` (sorted by source shard), reading each downloaded-images shard once."""
    for (shard,), group in rows.group_by(["src_shard"], maintain_order=True):
        blobs = read_members(store, shard, set(group["src_member"]))
        for member in group["src_member"]:
            yield blobs[member]


def _funnel(store: ObjectStore, snapshot: str, index_kept: int, released: int) -> list[list]:
    funnel = []
    for asset, label in FUNNEL_ASSETS:
        manifest = load_manifest(store, asset, snapshot)
        funnel.append([label, manifest.rows if manifest else 0])
    return funnel + [["cross-snapshot dedup", index_kept], ["takedowns", released]]


def _statistics(frame: pl.DataFrame) -> dict:
    if frame.height == 0:
        return {}
    return {"caption_chars_median": float(frame["text"].str.len_chars().median()),
            "caption_chars_mean": round(float(frame["text"].str.len_chars().mean()), 2),
            "width_median": float(frame["width"].median()), "height_median": float(frame["height"].median()),
            "clip_score_mean": round(float(frame["clip_score"].mean()), 4),
            "clip_score_min": round(float(frame["clip_score"].min()), 4),
            "clip_score_max": round(float(frame["clip_score"].max()), 4)}


def _earlier(store: ObjectStore, version: str, snapshot: str) -> pl.DataFrame:
    """uid, sha256 and snapshot of every earlier snapshot's latest built release.

    Earliest wins: a pair in two snapshots is the later snapshot's fault, so a release is checked
    against earlier ones only (``release_manifest`` checks the published union as a whole)."""
    frames = []
    for key in store.list(release_root(version) + "/"):
        parts = key.split("/")
        if len(parts) == 4 and parts[3] == "_manifest.json" and parts[2] < snapshot:
            staged = TableManifest.from_dict(get_json(store, key))
            frames += [read_parquet(store, k).select("uid", "sha256", "snapshot") for k in staged.parts]
    return pl.concat(frames) if frames else pl.DataFrame(schema={"uid": pl.String, "sha256": pl.String, "snapshot": pl.String})


@contextmanager
def _local_shards(store: ObjectStore, base: str, shards: list[str]) -> Iterator[list[tuple[str, Path]]]:
    with tempfile.TemporaryDirectory(prefix="danqing-release-") as tmp:
        paths = []
        for i, name in enumerate(shards):
            path = store.local_path(f"{base}/{name}")
            if path is None:
                path = Path(tmp) / f"{i}.tar"
                store.download_file(f"{base}/{name}", path)
            paths.append((name, path))
        yield paths


def build_release(store: ObjectStore, snapshot: str, pairs: pl.DataFrame, takedowns: Takedowns, *,
                  version: str, shard_samples: int, phash_max_distance: int) -> tuple[TableManifest, pl.DataFrame]:
    """Write a snapshot's release files (metadata + shards) for ``pairs`` (curated rows that survived
    cross-snapshot dedup) and its staged manifest; return the manifest and the rows takedowns removed."""
    # Rows in source-shard order, so each downloaded-images shard is read once.
    pairs = pairs.with_columns(src_shard=pl.col("shard"), src_member=pl.col("member"))
    frame = release_frame(pairs, keep=("src_shard", "src_member")).sort(["src_shard", "src_member", "uid"])
    rule = takedown_rules(frame, takedowns, phash_max_distance)
    removed = frame.filter(rule.is_not_null()).select("uid", "url", "page_url", "sha256").with_columns(
        rule=rule.drop_nulls())
    frame = frame.filter(rule.is_null())
    shard_names = [f"shards/{snapshot}-{i // shard_samples:05d}.tar" for i in range(frame.height)]
    frame = frame.with_columns(shard=pl.Series(shard_names, dtype=pl.String))
    metadata = frame.select(list(RELEASE_SCHEMA))
    buffer = io.BytesIO()
    metadata.write_parquet(buffer, compression="zstd", statistics=True)
    content_id = hashlib.sha256(buffer.getvalue()).hexdigest()[:16]
    base = f"{release_root(version)}/{snapshot}/{content_id}"

    files, sizes = [], {}
    rows = frame.iter_rows(named=True)
    images = _images(store, frame)
    for name in dict.fromkeys(shard_names):
        with ShardWriter(store, f"{base}/{name}") as writer:
            for _ in range(shard_samples):
                row = next(rows, None)
                if row is None:
                    break
                meta = {k: row[k] for k in JSON_FIELDS}
                writer.add(row["uid"], next(images), meta, IMAGE_EXT, extra={"txt": row["text"].encode("utf-8")})
            writer.commit()
        files.append(f"{base}/{name}")
    metadata_key = f"{base}/metadata.parquet"
    store.put_bytes(metadata_key, buffer.getvalue())
    for key in [metadata_key, *files]:  # sizes and checksums as stored, for the published manifest
        digest, size = hashlib.sha256(), 0
        with store.open_read(key) as stream:
            while chunk := stream.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
        sizes[key.removeprefix(f"{release_root(version)}/")] = {"bytes": size, "sha256": digest.hexdigest()}
    manifest = TableManifest("release", snapshot, (metadata_key,), metadata.height, schema_names(RELEASE_SCHEMA),
                             {"content_id": content_id, "base": base, "bytes": sum(f["bytes"] for f in sizes.values()),
                              "files": sizes,
                              "statistics": _statistics(metadata),
                              "takedowns_removed": [dict(zip(removed.columns, r)) for r in removed.iter_rows()]},
                             tuple(files))
    return manifest, removed


@dg.asset(
    partitions_def=cc_snapshots,
    group_name="release",
    deps=["clip_filtered_pairs", "dedup_index", "takedown_list", "downloaded_images"],
    check_specs=[dg.AssetCheckSpec(name, asset="release", blocking=True, description=text) for name, text in GATES.items()],
    automation_condition=follows_upstream_and_settings(),
    code_version=asset_code_version("release"),
    retry_policy=io_retry_policy(),
    description="A snapshot's release: WebDataset tar shards + parquet metadata under a versioned path, gated by "
                "blocking checks before release_manifest publishes it.",
)
def release(context: dg.AssetExecutionContext, storage: StorageResource):
    settings = get_settings()
    store = storage.store()
    snapshot, version = context.partition_key, settings.release_version
    takedowns, takedown_version = load_takedowns(store)
    curated, index = load_manifest(store, "clip_filtered_pairs", snapshot), load_manifest(store, "dedup_index", snapshot)
    if curated is None or index is None:
        raise dg.Failure(f"{snapshot}: clip_filtered_pairs and dedup_index must be materialised before its release")
    survivors = own_rows(store, index).select("uid")
    pairs = read_table(store, curated).join(survivors, on="uid", how="semi")
    manifest, removed = build_release(store, snapshot, pairs, takedowns, version=version,
                                      shard_samples=settings.release_shard_samples,
                                      phash_max_distance=settings.phash_max_distance)
    embeddings = load_manifest(store, "clip_embeddings", snapshot)
    random_weights = bool(embeddings and embeddings.stats.get("random_weights"))
    stats = {**manifest.stats, "funnel": _funnel(store, snapshot, survivors.height, manifest.rows),
             "takedown_list_version": takedown_version, "random_weights": random_weights}
    manifest = TableManifest(**{**asdict(manifest), "stats": stats})

    base = stats["base"]
    frame = read_parquet(store, manifest.parts[0])
    with _local_shards(store, base, [f.removeprefix(base + "/") for f in manifest.files]) as shards:
        seen = inspect_shards(shards)
    results = run_gates(frame, seen, _earlier(store, version, snapshot), takedowns)
    put_json(store, f"{base}/_gates.json", {r.name: {"passed": r.passed, "description": r.description,
                                                      "failures": r.failures, "examples": list(r.examples)}
                                             for r in results})
    put_json(store, staged_key(version, snapshot), asdict(manifest))

    rules = dict(removed["rule"].value_counts().iter_rows()) if removed.height else {}
    sample = frame.head(16)
    pictures = []
    if sample.height:
        first = sample.filter(pl.col("shard") == sample["shard"][0])["uid"].to_list()
        blobs = read_members(store, f"{base}/{sample['shard'][0]}", {f"{uid}.{IMAGE_EXT}" for uid in first})
        images = [image for uid in first if (image := _thumbnail_source(blobs[f"{uid}.{IMAGE_EXT}"])) is not None]
        pictures = [("released", images[:8]), ("released", images[8:16])]
    metadata = {
        "dagster/row_count": dg.MetadataValue.int(manifest.rows),
        "content_id": stats["content_id"],
        "location": dg.MetadataValue.text(store.uri(manifest.parts[0])),
        "shards": len(manifest.files),
        "bytes": stats["bytes"],
        "funnel": dg.MetadataValue.md("\n".join(["| stage | pairs left |", "|---|---:|",
                                                 *(f"| {s} | {n:,} |" for s, n in stats["funnel"])])),
        "removed_by_takedown": dg.MetadataValue.md(counter_table(rules, "rule", "pairs")),
        "gates": dg.MetadataValue.md("\n".join(["| gate | result |", "|---|---|",
                                                *(f"| {r.name} | {'pass' if r.passed else '**FAIL**'}: {r.description} |"
                                                  for r in results)])),
        "random_weights": random_weights,
        "sample_images": dg.MetadataValue.md(markdown_image(contact_sheet_jpeg(pictures), "released images", "image/jpeg")
                                             if pictures else "_nothing released_"),
    }
    if random_weights:
        metadata["WARNING"] = dg.MetadataValue.md(f"**{RANDOM_WEIGHTS_WARNING}** This release is a pipeline test.")
    return dg.MaterializeResult(metadata=metadata, check_results=[_check_result(r) for r in results])


def _thumbnail_source(data: bytes) -> Image.Image | None:
    """A decoded image for the contact sheet; an undecodable one is the images_decode gate's business."""
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
        return image
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def _check_result(result: GateResult) -> dg.AssetCheckResult:
    metadata = {"failures": result.failures}
    if result.examples:
        metadata["examples"] = dg.MetadataValue.md("\n".join(f"- `{e}`" for e in result.examples))
    return dg.AssetCheckResult(check_name=result.name, passed=result.passed, severity=dg.AssetCheckSeverity.ERROR,
                               description=result.description, metadata=metadata)


# --- release_manifest (the union) ------------------------------------------------------------------


def _published_entry(staged: TableManifest) -> dict:
    stats = staged.stats
    relative = stats["base"].split("/", 2)[2]  # <snapshot>/<content id>
    return {"path": relative + "/", "rows": staged.rows, "bytes": stats["bytes"], "files": stats["files"],
            "metadata": [k.split("/", 2)[2] for k in staged.parts], "shards": [k.split("/", 2)[2] for k in staged.files],
            "content_id": stats["content_id"], "funnel": stats["funnel"], "stats": stats["statistics"],
            "takedowns_removed": stats["takedowns_removed"], "takedown_list_version": stats["takedown_list_version"],
            "random_weights": stats["random_weights"]}


@dg.asset(
    group_name="release",
    deps=[dg.AssetDep("release", partition_mapping=dg.AllPartitionMapping())],
    pool="release_manifest",
    automation_condition=follows_upstream_and_settings(),
    code_version=asset_code_version("release_manifest"),
    retry_policy=io_retry_policy(),
    description="The published release: manifest.json listing every snapshot whose gates passed, and the dataset card.",
)
def release_manifest(context: dg.AssetExecutionContext, storage: StorageResource):
    settings = get_settings()
    store = storage.store()
    version = settings.release_version
    root = release_root(version)
    try:
        previous = get_json(store, f"{root}/manifest.json")
    except ObjectNotFound:
        previous = {"snapshots": {}}
    snapshots, unpublished, seen_uids, seen_images = {}, {}, set(), set()
    for snapshot in sorted(context.instance.get_dynamic_partitions(cc_snapshots.name)):
        staged = load_staged(store, version, snapshot)
        if staged is None:
            unpublished[snapshot] = "no release built yet"
            continue
        try:
            gates = get_json(store, f"{staged.stats['base']}/_gates.json")
        except ObjectNotFound:
            gates = {}
        failed = sorted(name for name in GATES if not gates.get(name, {}).get("passed"))
        candidate = _published_entry(staged) if not failed else previous["snapshots"].get(snapshot)
        if failed:  # the last good release, if any, stays published
            unpublished[snapshot] = f"gates failed: {', '.join(failed)} (content {staged.stats['content_id']})"
        if candidate is None:
            continue
        keys = pl.concat([read_parquet(store, f"{root}/{k}").select("uid", "sha256") for k in candidate["metadata"]])
        clash = keys.filter(pl.col("uid").is_in(list(seen_uids)) | pl.col("sha256").is_in(list(seen_images)))
        if clash.height:  # built before an earlier snapshot's data arrived: wait for its rebuild
            unpublished[snapshot] = (f"{clash.height} pairs repeat an earlier snapshot's release; waiting for its "
                                     "dedup_index and release to be rebuilt")
            continue
        snapshots[snapshot] = candidate
        seen_uids.update(keys["uid"].to_list())
        seen_images.update(keys["sha256"].to_list())
    totals = {"pairs": sum(s["rows"] for s in snapshots.values()), "bytes": sum(s["bytes"] for s in snapshots.values()),
              "shards": sum(len(s["shards"]) for s in snapshots.values()),
              "takedowns_removed": sum(len(s["takedowns_removed"]) for s in snapshots.values())}
    manifest = {"name": "danqing_assets", "version": version, "snapshots": snapshots, "unpublished": unpublished,
                "totals": totals, "schema": {k: str(v) for k, v in RELEASE_SCHEMA.items()},
                "licence": settings.release_licence_notice}
    put_json(store, f"{root}/manifest.json", manifest)
    store.put_bytes(f"{root}/README.md", dataset_card(manifest, settings.release_licence_notice).encode("utf-8"))

    # Content directories neither published nor staged are left over from earlier builds.
    keep = {f"{root}/{entry['path']}" for entry in snapshots.values()}
    for snapshot in {*snapshots, *unpublished}:
        staged = load_staged(store, version, snapshot)
        if staged is not None:
            keep.add(staged.stats["base"] + "/")
        for key in store.list(f"{root}/{snapshot}/"):
            if key != staged_key(version, snapshot) and not any(key.startswith(k) for k in keep):
                store.delete(key)
    rows = [f"| {name} | {s['rows']:,} | {len(s['shards'])} | {len(s['takedowns_removed'])} |" for name, s in snapshots.items()]
    return dg.MaterializeResult(metadata={
        "dagster/row_count": dg.MetadataValue.int(totals["pairs"]),
        "published": dg.MetadataValue.md("\n".join(["| snapshot | pairs | shards | removed by takedown |",
                                                    "|---|---:|---:|---:|", *rows])),
        "unpublished": dg.MetadataValue.json(unpublished),
        "totals": dg.MetadataValue.json(totals),
        "dataset_card": dg.MetadataValue.md(dataset_card(manifest, settings.release_licence_notice)),
        "location": dg.MetadataValue.text(store.uri(f"{root}/manifest.json")),
    })
