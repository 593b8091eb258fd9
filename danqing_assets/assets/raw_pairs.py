"""``raw_pairs``: every image–text pair of a snapshot's Chinese HTML pages.

Fan-out: one step lists the snapshot's WARC files and splits them into shards,
one step per shard extracts pairs (so a distributed executor spreads a snapshot
over many workers, and a failed shard is retried or re-executed alone), and a
last step commits the shards' parquet parts as one partition.
"""


import time
from dataclasses import dataclass

import dagster as dg
import polars as pl

from ..asset_versions import asset_code_version, follows_upstream_and_settings
from ..curation.extract_pairs import RAW_PAIRS_SCHEMA, ExtractionConfig, ExtractionStats, extract_pairs
from ..curation.image_links import LinkLimits
from ..partitions import cc_snapshots
from ..progress import Progress
from ..resources.common_crawl import CommonCrawlResource
from ..resources.storage import StorageResource, write_parquet
from ..resources.tables import TableManifest, manifest_key, part_key, read_table, schema_names
from ..retries import io_retry_policy
from ..settings import get_settings
from .metadata import counter_table, preview_markdown

ASSET = "raw_pairs"


@dataclass(frozen=True)
class WarcShard:
    snapshot: str
    index: int
    count: int
    warc_paths: tuple[str, ...]


@dataclass(frozen=True)
class ShardResult:
    shard: WarcShard
    part: str
    rows: int
    stats: dict


def split_into_shards(snapshot: str, paths: list[str], files_per_shard: int) -> list[WarcShard]:
    groups = [tuple(paths[i : i + files_per_shard]) for i in range(0, len(paths), files_per_shard)]
    return [WarcShard(snapshot, i, len(groups), group) for i, group in enumerate(groups)]


@dg.op(out=dg.DynamicOut(WarcShard), retry_policy=io_retry_policy(),
       description="List the snapshot's WARC files and split them into shards.")
def plan_warc_shards(context: dg.OpExecutionContext, common_crawl: CommonCrawlResource):
    settings = get_settings()
    snapshot = context.partition_key
    with common_crawl.client() as client:
        paths = client.warc_paths(snapshot)
    if settings.warc_files_per_snapshot:
        paths = paths[: settings.warc_files_per_snapshot]
    shards = split_into_shards(snapshot, paths, settings.warc_files_per_shard)
    context.log.info(f"{snapshot}: {len(paths)} WARC files in {len(shards)} shards")
    for shard in shards:
        yield dg.DynamicOutput(shard, mapping_key=f"shard_{shard.index:05d}")


@dg.op(retry_policy=io_retry_policy(), description="Extract image–text pairs from one shard of WARC files.")
def extract_shard_pairs(
    context: dg.OpExecutionContext, storage: StorageResource, common_crawl: CommonCrawlResource, shard: WarcShard
) -> ShardResult:
    settings = get_settings()
    config = ExtractionConfig(
        languages=settings.page_language_codes,
        reader=settings.warc_reader,
        max_page_bytes=settings.max_page_bytes,
        limits=LinkLimits(settings.max_images_per_page, settings.max_alt_chars, settings.max_url_chars),
    )
    progress = Progress(context, f"{ASSET} shard {shard.index + 1}/{shard.count}", "WARC files", len(shard.warc_paths))
    frames, stats = [], ExtractionStats()
    with common_crawl.client() as client:
        for path in shard.warc_paths:
            with client.open_warc(path) as stream:
                frame, file_stats = extract_pairs(stream, snapshot=shard.snapshot, warc_path=path, config=config)
            frames.append(frame)
            stats.merge(file_stats)
            progress.advance(note=f"{stats.pages_read} pages, {stats.pairs} pairs")
    for error in stats.read_errors:
        context.log.warning(f"WARC read error (pages before it kept): {error}")
    table = pl.concat(frames) if frames else pl.DataFrame(schema=RAW_PAIRS_SCHEMA)
    key = part_key(ASSET, shard.snapshot, f"shard-{shard.index:05d}-{context.run_id[:8]}")
    write_parquet(storage.store(), key, table)
    return ShardResult(shard, key, table.height, stats.to_dict())


@dg.op(retry_policy=io_retry_policy(), description="Commit the shards' parts as the snapshot's raw_pairs partition.")
def commit_raw_pairs(
    context: dg.OpExecutionContext, storage: StorageResource, results: list[ShardResult]
) -> dg.Output[TableManifest]:
    started = time.perf_counter()
    results = sorted(results, key=lambda r: r.shard.index)
    stats = ExtractionStats()
    for result in results:
        stats.merge(ExtractionStats.from_dict(result.stats))
    snapshot = context.partition_key
    manifest = TableManifest(
        asset=ASSET,
        partition=snapshot,
        parts=tuple(r.part for r in results),
        rows=sum(r.rows for r in results),
        schema=schema_names(RAW_PAIRS_SCHEMA),
        stats=stats.to_dict(),
    )
    sample = read_table(storage.store(), manifest).head(20) if manifest.rows else None
    metadata = {
        "dagster/row_count": dg.MetadataValue.int(manifest.rows),
        "warc_files": stats.warc_files,
        "shards": len(results),
        "pages_read": stats.pages_read,
        "pages_parsed": stats.pages_parsed,
        "images_seen": stats.images_seen,
        "pages_skipped": dg.MetadataValue.md(counter_table(stats.pages_skipped, "reason", "pages")),
        "images_dropped": dg.MetadataValue.md(counter_table(stats.images_dropped, "reason", "images")),
        "charset_sources": dg.MetadataValue.json(dict(stats.charset_sources)),
        "warc_read_errors": dg.MetadataValue.json(stats.read_errors),
        "preview": dg.MetadataValue.md(preview_markdown(sample, ["url", "alt_text", "text_source", "page_url"])),
        "location": dg.MetadataValue.text(storage.store().uri(manifest_key(ASSET, snapshot))),
    }
    context.log.info(f"{ASSET} {snapshot}: {manifest.rows} pairs from {stats.pages_parsed} pages ({time.perf_counter() - started:.1f}s to commit)")
    return dg.Output(manifest, metadata=metadata)


@dg.graph_asset(
    partitions_def=cc_snapshots,
    group_name="ingest",
    code_version=asset_code_version("raw_pairs"),
    automation_condition=follows_upstream_and_settings(),
    description="Image–text pairs (image URL, alt text and provenance) from the snapshot's HTML pages.",
)
def raw_pairs():
    shards = plan_warc_shards()
    return commit_raw_pairs(shards.map(extract_shard_pairs).collect())
