"""``downloaded_images`` and ``image_download_failures``: every image URL of the text-filtered pairs.

Fan-out like raw_pairs: one step plans chunks of URLs, one step per chunk
downloads them politely into a WebDataset tar shard with a parquet index, and a
last step commits. A later run downloads only what is new or failed for a
transient reason (timeouts, 5xx, 429): earlier shards and final failures are
carried over, not fetched again.
"""

import os
from collections import Counter
from dataclasses import dataclass

import dagster as dg
import polars as pl

from ..asset_versions import asset_code_version, follows_upstream_and_settings
from ..curation.images.decode import DecodeLimits
from ..curation.images.download import DownloadConfig
from ..curation.images.ingest import FAILURE_SCHEMA, IMAGE_INDEX_SCHEMA, download_chunk
from ..partitions import cc_snapshots
from ..progress import Progress
from ..resources.shards import ShardWriter
from ..resources.storage import StorageResource, write_parquet
from ..resources.tables import (
    TableManifest,
    file_key,
    iter_parts,
    load_manifest,
    manifest_key,
    part_key,
    read_table,
    schema_names,
)
from ..retries import io_retry_policy
from ..settings import get_settings
from .metadata import counter_table
from .plots import bar_chart_png, histogram, markdown_image, sparkline_png

IMAGES, FAILURES = "downloaded_images", "image_download_failures"
# Failures the guard or the site decided: counted apart in the funnel.
REFUSALS = ("robots_disallowed", "x_robots_noai", "ssrf_blocked")


@dataclass(frozen=True)
class DownloadChunk:
    snapshot: str
    index: int
    count: int
    urls: tuple[str, ...]


@dataclass(frozen=True)
class CarriedOver:
    """What an earlier materialisation already settled and this run keeps."""

    index_parts: tuple[str, ...]
    shards: tuple[str, ...]
    failures_part: str | None
    images: int
    failures: int


@dataclass(frozen=True)
class ChunkResult:
    index_part: str
    failures_part: str
    shard: str | None
    counts: dict


def _urls(store, manifest: TableManifest | None) -> set[str]:
    if manifest is None:
        return set()
    return {u for part in iter_parts(store, manifest, ["url"]) for u in part["url"].to_list()}


@dg.op(
    out={"chunks": dg.DynamicOut(DownloadChunk), "carried": dg.Out(CarriedOver)},
    retry_policy=io_retry_policy(),
    description="Find the image URLs to download: new ones and earlier transient failures.",
)
def plan_image_downloads(context: dg.OpExecutionContext, storage: StorageResource, text_filtered_pairs: TableManifest):
    settings = get_settings()
    store = storage.store()
    snapshot = context.partition_key
    wanted = _urls(store, text_filtered_pairs)
    previous = load_manifest(store, IMAGES, snapshot)
    previous_failures = load_manifest(store, FAILURES, snapshot)
    done = _urls(store, previous)
    failures = read_table(store, previous_failures) if previous_failures else pl.DataFrame(schema=FAILURE_SCHEMA)
    final = failures.filter(~pl.col("retryable") & pl.col("url").is_in(list(wanted)))
    carried_failures = None
    if final.height:
        carried_failures = part_key(FAILURES, snapshot, f"carried-{context.run_id[:8]}")
        write_parquet(store, carried_failures, final)
    todo = sorted(wanted - done - set(final["url"].to_list()))
    yield dg.Output(
        CarriedOver(
            index_parts=previous.parts if previous else (),
            shards=previous.files if previous else (),
            failures_part=carried_failures,
            images=previous.rows if previous else 0,
            failures=final.height,
        ),
        output_name="carried",
    )
    size = settings.download_urls_per_shard
    chunks = [tuple(todo[i : i + size]) for i in range(0, len(todo), size)]
    context.log.info(f"{snapshot}: {len(wanted)} image URLs, {len(done)} stored before, {final.height} failed for good, "
                     f"{len(todo)} to download in {len(chunks)} chunks")
    for i, urls in enumerate(chunks):
        yield dg.DynamicOutput(DownloadChunk(snapshot, i, len(chunks), urls), output_name="chunks", mapping_key=f"chunk_{i:05d}")


@dg.op(retry_policy=io_retry_policy(), description="Download one chunk of image URLs into a WebDataset shard.")
def download_image_chunk(context: dg.OpExecutionContext, storage: StorageResource, chunk: DownloadChunk) -> ChunkResult:
    settings = get_settings()
    store = storage.store()
    name = f"chunk-{chunk.index:05d}-{context.run_id[:8]}"
    progress = Progress(context, f"downloaded_images chunk {chunk.index + 1}/{chunk.count}", "images", len(chunk.urls))

    def report(counts: Counter) -> None:
        progress.update(sum(counts.values()), note=f"{counts['ok']} ok")

    shard_key = file_key(IMAGES, chunk.snapshot, f"{name}.tar")
    with ShardWriter(store, shard_key) as shard:
        outcome = download_chunk(
            chunk.urls, DownloadConfig.from_settings(settings), DecodeLimits.from_settings(settings), shard, shard_key,
            workers=max(1, os.cpu_count() or 1), on_progress=report,
        )
        stored = shard.commit() if shard.count else None
        if not shard.count:
            shard.discard()
    index_part = part_key(IMAGES, chunk.snapshot, name)
    failures_part = part_key(FAILURES, chunk.snapshot, name)
    write_parquet(store, index_part, outcome.index)
    write_parquet(store, failures_part, outcome.failures)
    return ChunkResult(index_part, failures_part, stored, dict(outcome.counts))


def download_funnel(counts: Counter) -> str:
    ok = counts.get("ok", 0) + counts.get("carried_over", 0)
    refused = {k: v for k, v in counts.items() if k in REFUSALS}
    failed = {k: v for k, v in counts.items() if k not in REFUSALS and k not in ("ok", "carried_over")}
    total = sum(counts.values())
    lines = ["| outcome | images |", "|---|---:|", f"| **attempted** | {total:,} |",
             f"| stored (this run) | {counts.get('ok', 0):,} |", f"| stored (earlier runs) | {counts.get('carried_over', 0):,} |",
             f"| **stored, total** | {ok:,} |"]
    lines += [f"| refused: {k} | {v:,} |" for k, v in sorted(refused.items())]
    lines += [f"| failed: {k} | {v:,} |" for k, v in sorted(failed.items(), key=lambda kv: -kv[1])]
    return "\n".join(lines)


@dg.op(out={"images": dg.Out(TableManifest), "failures": dg.Out(TableManifest)}, retry_policy=io_retry_policy(),
       description="Commit the chunks (and what earlier runs settled) as the snapshot's partitions.")
def commit_image_downloads(context: dg.OpExecutionContext, storage: StorageResource, carried: CarriedOver,
                           results: list[ChunkResult]):
    store = storage.store()
    snapshot = context.partition_key
    results = sorted(results, key=lambda r: r.index_part)
    counts: Counter = Counter()
    for result in results:
        counts.update(result.counts)
    counts["carried_over"] += carried.images
    index_parts = carried.index_parts + tuple(r.index_part for r in results)
    failure_parts = ((carried.failures_part,) if carried.failures_part else ()) + tuple(r.failures_part for r in results)
    shards = carried.shards + tuple(r.shard for r in results if r.shard)
    images = TableManifest(IMAGES, snapshot, index_parts, carried.images + sum(r.counts.get("ok", 0) for r in results),
                           schema_names(IMAGE_INDEX_SCHEMA), {"counts": dict(counts)}, files=shards)
    n_failures = carried.failures + sum(sum(v for k, v in r.counts.items() if k != "ok") for r in results)
    failures = TableManifest(FAILURES, snapshot, failure_parts, n_failures, schema_names(FAILURE_SCHEMA),
                             {"counts": {k: v for k, v in counts.items() if k not in ("ok", "carried_over")}})
    short_edges = [min(w, h) for part in iter_parts(store, images, ["orig_width", "orig_height"]) for w, h in part.iter_rows()]
    labels, bins = histogram([e // 50 for e in short_edges], 0, 40)
    chart = bar_chart_png([str(int(l) * 50) for l in labels], bins, f"shortest edge (px, bins of 50), {snapshot}")
    inline = markdown_image(sparkline_png(bins), "shortest-edge histogram") + "\n\nshortest edge, 0–2000 px in bins of 50 (right edge: 2000+)"
    yield dg.Output(images, output_name="images", metadata={
        "dagster/row_count": dg.MetadataValue.int(images.rows),
        "download_funnel": dg.MetadataValue.md(download_funnel(counts)),
        "resolution_histogram": dg.MetadataValue.md(inline),
        "resolution_chart": dg.MetadataValue.md(markdown_image(chart, "shortest edge chart")),
        "shards": len(shards),
        "location": dg.MetadataValue.text(store.uri(manifest_key(IMAGES, snapshot))),
    })
    yield dg.Output(failures, output_name="failures", metadata={
        "dagster/row_count": dg.MetadataValue.int(n_failures),
        "failures_by_reason": dg.MetadataValue.md(counter_table(failures.stats["counts"], "reason", "images")),
    })


@dg.graph_multi_asset(
    outs={
        IMAGES: dg.AssetOut(group_name="images", code_version=asset_code_version(IMAGES),
                          automation_condition=follows_upstream_and_settings(),
                          description="Stored images: WebDataset shards + parquet index with sizes, blur, entropy, pHash."),
        FAILURES: dg.AssetOut(group_name="images", code_version=asset_code_version(FAILURES),
                          automation_condition=follows_upstream_and_settings(),
                          description="Image URLs that could not be used, with reason and whether to retry."),
    },
    ins={"text_filtered_pairs": dg.AssetIn()},
    partitions_def=cc_snapshots,
)
def downloaded_images(text_filtered_pairs):
    chunks, carried = plan_image_downloads(text_filtered_pairs)
    images, failures = commit_image_downloads(carried, chunks.map(download_image_chunk).collect())
    return {IMAGES: images, FAILURES: failures}
