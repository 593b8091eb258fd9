"""``text_filtered_pairs`` and ``text_rejected_pairs``: the paper's coarse and text filters.

All text filtering happens before any image is downloaded. The snapshot is
processed one raw_pairs part at a time (memory stays at one part); rejected rows
are kept with their reason so thresholds can be audited and tuned without
re-reading WARC files.
"""

import dagster as dg

from ..asset_versions import asset_code_version, follows_upstream_and_settings
from ..curation.text.chain import TextStageConfig, TextStageReport, build_filters, run_text_stage
from ..partitions import cc_snapshots
from ..progress import Progress
from ..resources.storage import StorageResource, write_parquet
from ..resources.tables import TableManifest, iter_parts, manifest_key, part_key, schema_names
from ..retries import io_retry_policy
from ..settings import Settings, get_settings
from .metadata import counter_table
from .plots import bar_chart_png, histogram, markdown_image, sparkline_png

KEPT, REJECTED = "text_filtered_pairs", "text_rejected_pairs"


def text_stage_config(settings: Settings) -> TextStageConfig:
    return TextStageConfig(
        min_words=settings.text_min_words,
        max_words=settings.text_max_words,
        min_han_ratio=settings.text_min_han_ratio,
        min_langid_percent=settings.text_min_langid_percent,
        max_unk_tokens=settings.text_max_unk_tokens,
        min_entropy_bits=settings.text_min_entropy_bits,
        domain_blocklist_file=settings.domain_blocklist_file,
        generic_alts_file=settings.generic_alts_file,
        sensitive_words_file=settings.sensitive_words_file,
        safety_classifier=settings.text_safety_classifier,
        safety_model_path=settings.text_safety_model_path,
        safety_threshold=settings.text_safety_threshold,
    )


def funnel_markdown(report: TextStageReport) -> str:
    lines = ["| filter | in | out | dropped |", "|---|---:|---:|---:|"]
    for name, (rows_in, rows_out) in report.steps.items():
        lines.append(f"| {name} | {rows_in:,} | {rows_out:,} | {rows_in - rows_out:,} |")
    return "\n".join(lines)


def examples_markdown(report: TextStageReport) -> str:
    if not report.examples:
        return "_nothing rejected_"
    lines = ["| reason | alt text (as found) | refined text |", "|---|---|---|"]
    for reason in sorted(report.examples):
        for row in report.examples[reason]:
            alt = row["alt_text"].replace("|", "\\|")[:80]
            text = row["text"].replace("|", "\\|")[:80]
            lines.append(f"| {reason} | {alt} | {text} |")
    return "\n".join(lines)


@dg.multi_asset(
    outs={
        KEPT: dg.AssetOut(group_name="text", code_version=asset_code_version(KEPT),
                          automation_condition=follows_upstream_and_settings(),
                          description="Pairs whose refined caption passed every text filter."),
        REJECTED: dg.AssetOut(group_name="text", code_version=asset_code_version(REJECTED),
                          automation_condition=follows_upstream_and_settings(),
                          description="Pairs the text filters dropped, with filter and reason."),
    },
    ins={"raw_pairs": dg.AssetIn()},
    partitions_def=cc_snapshots,
    retry_policy=io_retry_policy(),
)
def text_filtered_pairs(context: dg.AssetExecutionContext, storage: StorageResource, raw_pairs: TableManifest):
    snapshot = context.partition_key
    store = storage.store()
    chain = build_filters(text_stage_config(get_settings()))
    report = TextStageReport()
    kept_parts, rejected_parts = [], []
    kept_schema = rejected_schema = None
    word_counts: list[int] = []
    progress = Progress(context, "text_filtered_pairs", "parts", len(raw_pairs.parts))
    run = context.run.run_id[:8]
    for index, raw in enumerate(iter_parts(store, raw_pairs)):
        kept, rejected, part_report = run_text_stage(raw, chain)
        report.merge(part_report)
        word_counts.extend(kept["word_count"].to_list())
        for frame, asset, parts in ((kept, KEPT, kept_parts), (rejected, REJECTED, rejected_parts)):
            key = part_key(asset, snapshot, f"part-{index:05d}-{run}")
            write_parquet(store, key, frame)
            parts.append(key)
        kept_schema, rejected_schema = dict(kept.schema), dict(rejected.schema)
        progress.advance(note=f"{report.rows_in:,} pairs in, {report.rows_out:,} kept")

    summary = report.to_dict()
    kept_manifest = TableManifest(KEPT, snapshot, tuple(kept_parts), report.rows_out,
                                  schema_names(kept_schema or {}), summary)
    rejected_manifest = TableManifest(REJECTED, snapshot, tuple(rejected_parts), report.rows_in - report.rows_out,
                                      schema_names(rejected_schema or {}), {"reasons": summary["reasons"]})
    labels, counts = histogram(word_counts, 0, 64)
    chart = bar_chart_png(labels, counts, f"caption length in jieba words, {snapshot} ({report.rows_out:,} captions)")
    peak = max(range(len(counts)), key=counts.__getitem__) if word_counts else 0
    # The UI shows a picture inline only in markdown under 1,000 characters: a 1-bit chart fits.
    inline_chart = (markdown_image(sparkline_png(counts), "caption length histogram")
                    + f"\n\njieba words per caption, 0–64 (right edge: 64+); most common: {peak} words")
    yield dg.Output(
        kept_manifest,
        output_name=KEPT,
        metadata={
            "dagster/row_count": dg.MetadataValue.int(report.rows_out),
            "rows_in": report.rows_in,
            "funnel": dg.MetadataValue.md(funnel_markdown(report)),
            "dropped_by_reason": dg.MetadataValue.md(counter_table(report.reasons, "reason", "pairs")),
            "rejected_examples": dg.MetadataValue.md(examples_markdown(report)),
            "caption_length_histogram": dg.MetadataValue.md(inline_chart),
            "caption_length_chart": dg.MetadataValue.md(markdown_image(chart, "caption length chart with axes")),
            "filters": dg.MetadataValue.json({f.name: f.params() for f in chain}),
            "location": dg.MetadataValue.text(store.uri(manifest_key(KEPT, snapshot))),
        },
    )
    yield dg.Output(
        rejected_manifest,
        output_name=REJECTED,
        metadata={
            "dagster/row_count": dg.MetadataValue.int(rejected_manifest.rows),
            "dropped_by_reason": dg.MetadataValue.md(counter_table(report.reasons, "reason", "pairs")),
            "location": dg.MetadataValue.text(store.uri(manifest_key(REJECTED, snapshot))),
        },
    )
