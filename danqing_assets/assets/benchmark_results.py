"""``benchmark_results``: the paper's dataset analysis of a curated snapshot, and Chinese-CLIP on benchmark sets.

Analysis (pictures on the asset page, numbers in metadata and in
``datasets/benchmark_results/<snapshot>/files/results.json``): caption length in
jieba words, short side of the images, the image–text score, semantic balance
(k-means cluster sizes of the image embeddings, largest first), and the share of
nouns / verbs / adjectives. A table compares the key numbers with every other
snapshot whose results are stored.

Evaluation: the configured Chinese-CLIP model on the sets under
``DANQING_BENCHMARK_SETS_DIR`` (Chinese-CLIP's format: Flickr30K-CN, COCO-CN,
MUGE, zero-shot sets); without one, on a tiny smoke-test set built from this
snapshot's own pairs, marked as such, as are results on random weights.
"""

import functools
import tempfile
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl

from ..asset_versions import asset_code_version, follows_upstream_and_settings
from ..curation.embed.clip_model import RANDOM_WEIGHTS_WARNING, LoadedClip
from ..curation.embed.embedder import from_binary
from ..curation.evaluation.analysis import DatasetAnalysis, analyse, balance_stats
from ..curation.evaluation.benchmark_sets import discover_sets
from ..curation.evaluation.evaluate import evaluate_sets
from ..curation.evaluation.smoke_set import SMOKE_WARNING, build_smoke_sets
from ..gpu import GPU_POOL, gpu_op_tags
from ..partitions import cc_snapshots
from ..resources.clip import ClipModelResource
from ..resources.storage import ObjectStore, StorageResource, get_json, put_json, read_parquet
from ..resources.tables import TableManifest, commit_table, file_key, read_table, table_prefix
from ..retries import io_retry_policy
from ..settings import Settings, get_settings
from .clip_embeddings import image_bytes
from .plots import bar_chart_png, downsample, line_chart_png, markdown_image, sparkline_png
from .release import load_staged

ASSET = "benchmark_results"
RESULTS_NAME = "results.json"


def curated_pairs(store: ObjectStore, pairs: TableManifest, embeddings: TableManifest, snapshot: str) -> pl.DataFrame:
    """The released pairs with their image embedding: the one place that says what "curated" is."""
    release = load_staged(store, get_settings().release_version, snapshot)
    if release is None:
        raise dg.Failure(f"{snapshot}: the release must be built before its benchmark results")
    released = pl.concat([read_parquet(store, key).select("uid") for key in release.parts])
    vectors = read_table(store, embeddings).select("uid", "image_embedding")
    return read_table(store, pairs).join(released, on="uid", how="semi").join(vectors, on="uid", how="inner").sort("uid")


def results_key(snapshot: str) -> str:
    return file_key(ASSET, snapshot, RESULTS_NAME)


def stored_results(store: ObjectStore) -> dict[str, dict]:
    """Every snapshot's stored results, by snapshot."""
    suffix = f"/files/{RESULTS_NAME}"
    return {key.removesuffix(suffix).rsplit("/", 1)[-1]: get_json(store, key)
            for key in store.list(table_prefix(ASSET, "")) if key.endswith(suffix)}


def inline_picture(counts: list[int], alt: str, caption: str) -> str:
    """A sparkline with a caption: kept under the UI's 1,000 characters, so it shows on the page itself."""
    return f"{markdown_image(sparkline_png([int(c) for c in counts]), alt)}\n\n{caption}"


def _evaluate(settings: Settings, clip_model: ClipModelResource, clip: LoadedClip, store: ObjectStore,
              pairs: pl.DataFrame) -> tuple[list[dict], bool]:
    """Results on the configured sets, or on the smoke-test set built from ``pairs``; and whether it was the smoke test."""
    run = functools.partial(evaluate_sets, clip, batch_size=clip_model.batch_size, workers=clip_model.loader_workers)
    chosen = settings.benchmark_prompt_templates
    if settings.benchmark_sets_dir is not None:
        templates = "openai" if chosen == "auto" else chosen
        return run(settings.benchmark_sets_dir, split=settings.benchmark_retrieval_split, templates=templates), False
    sample = pairs.head(settings.benchmark_smoke_pairs)
    if sample.height < 2:
        return [], True
    with tempfile.TemporaryDirectory(prefix="danqing-smoke-set-") as root:
        build_smoke_sets(Path(root), sample["text"].to_list(), image_bytes(store, sample))
        return run(Path(root), split="test", templates="normal" if chosen == "auto" else chosen), True


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() and abs(value) >= 1 else f"{value:.3g}"


def evaluation_table(results: list[dict]) -> str:
    if not results:
        return "_no benchmark set evaluated_"
    lines = ["| set | task | split | size | text→image R@1 / R@5 / R@10 | image→text R@1 / R@5 / R@10 | score |",
             "|---|---|---|---|---|---|---:|"]
    for r in results:
        if r["kind"] == "retrieval":
            t2i, i2t = (" / ".join(f"{v:.1f}" for v in r[d].values()) for d in ("text_to_image", "image_to_text"))
            lines.append(f"| {r['set']} | retrieval | {r['split']} | {r['texts']:,} texts, {r['images']:,} images | {t2i} | {i2t} "
                         f"| mean recall {r['mean_recall']:.1f} |")
        else:
            acc = ", ".join(f"{k} {v:.1f}" for k, v in r.items() if k.startswith("top"))
            lines.append(f"| {r['set']} | zero-shot | {r['split']} | {r['images']:,} images, {r['classes']} classes | | | {acc} |")
    return "\n".join(lines)


def comparison_rows(results: dict) -> dict[str, float]:
    rows = dict(results["analysis"])
    for r in results["evaluation"]:
        label = f"{r['set']} mean recall" if r["kind"] == "retrieval" else f"{r['set']} top-1"
        rows[label] = r["mean_recall"] if r["kind"] == "retrieval" else r["top1"]
    return rows


def comparison_table(snapshot: str, by_snapshot: dict[str, dict], order: list[str] = ()) -> str:
    """Key numbers of every stored snapshot side by side (this one in bold); rows named in ``order`` first."""
    snapshots = sorted(by_snapshot)
    rows = {s: comparison_rows(by_snapshot[s]) for s in snapshots}
    names = list(dict.fromkeys([*order, *(name for s in snapshots for name in rows[s])]))
    head = " | ".join(f"**{s}**" if s == snapshot else s for s in snapshots)
    lines = [f"| | {head} |", "|---|" + "---:|" * len(snapshots)]
    for name in names:
        cells = " | ".join(_fmt(rows[s][name]) if name in rows[s] else "–" for s in snapshots)
        lines.append(f"| {name} | {cells} |")
    marks = [s for s in snapshots if by_snapshot[s].get("random_weights") or by_snapshot[s].get("smoke_test")]
    if marks:
        lines.append(f"\nRandom-weight or smoke-test evaluation in: {', '.join(marks)}.")
    return "\n".join(lines)


def histogram_pictures(key: str, histogram, alt: str, caption: str, title: str, chart_alt: str,
                       chart_key: str | None = None) -> dict[str, dg.MetadataValue]:
    """A histogram twice: a sparkline small enough to show inline (``key``) and the full bar chart beside it
    (``chart_key``, default ``<key>_chart``)."""
    return {
        key: dg.MetadataValue.md(inline_picture(histogram.counts, alt, caption)),
        chart_key or f"{key}_chart": dg.MetadataValue.md(markdown_image(
            bar_chart_png(histogram.labels, histogram.counts, title), chart_alt)),
    }


def analysis_pictures(analysis: DatasetAnalysis, snapshot: str, score_scale: float) -> dict[str, dg.MetadataValue]:
    hist = analysis.histograms()
    numbers = analysis.key_numbers()
    sizes = analysis.cluster_sizes.tolist()
    balance = balance_stats(analysis.cluster_sizes)
    curve = [int(v) for v in downsample(sizes, 60)]
    pos = analysis.pos
    return {
        **histogram_pictures("caption_length", hist["caption_words"], "caption length histogram",
                             f"jieba words per caption, 0–60: mean {numbers['caption_words_mean']:.1f}, median "
                             f"{numbers['caption_words_median']:.0f}, {numbers['caption_share_6_to_40_words']:.0%} "
                             "within 6–40",
                             f"Caption length (jieba words), {snapshot}", "caption length chart"),
        **histogram_pictures("resolution", hist["short_side_px"], "image short side histogram",
                             f"short side of the original image, bins of 50 px up to 1,000+: median "
                             f"{numbers['short_side_median_px']:.0f} px, "
                             f"{numbers['short_side_share_300_to_500_px']:.0%} within 300–500 px",
                             f"Image short side (px), {snapshot}", "resolution chart"),
        **histogram_pictures("score_distribution", hist["scaled_score"], "image-text score histogram",
                             f"Chinese-CLIP score ({score_scale:g} × cosine), 0–2 in bins of 0.05: median "
                             f"{numbers['scaled_score_median']:.2f}",
                             f"Image-text score ({score_scale:g} x cosine), {snapshot}", "score chart",
                             chart_key="score_chart"),
        "semantic_balance": dg.MetadataValue.md(inline_picture(
            curve, "k-means cluster sizes, largest first",
            f"{balance['clusters']:,} k-means clusters of the image embeddings, sizes largest first: largest "
            f"{balance['largest']:,}, median {balance['median']:.0f}, normalised entropy "
            f"{balance['normalised_entropy']:.2f} (1 = even)")),
        "semantic_balance_chart": dg.MetadataValue.md(markdown_image(line_chart_png(
            sizes, f"Pairs per k-means cluster, largest first, {snapshot}", "clusters"), "cluster size curve")),
        "part_of_speech": dg.MetadataValue.md("\n".join([
            "| jieba POS | share of words |", "|---|---:|",
            *(f"| {name} | {pos[name]:.1%} |" for name in ("noun", "verb", "adjective")),
            f"| (words counted) | {pos['words']:,} |"])),
        "part_of_speech_chart": dg.MetadataValue.md(markdown_image(bar_chart_png(
            ["noun", "verb", "adjective"], [round(1000 * pos[n]) for n in ("noun", "verb", "adjective")],
            f"Share of words (per mille), {snapshot}"), "part-of-speech chart")),
    }


@dg.asset(
    partitions_def=cc_snapshots,
    group_name="evaluate",
    ins={"clip_filtered_pairs": dg.AssetIn(), "clip_embeddings": dg.AssetIn()},
    deps=["release"],
    code_version=asset_code_version("benchmark_results"),
    automation_condition=follows_upstream_and_settings(),
    retry_policy=io_retry_policy(),
    op_tags=gpu_op_tags(),
    pool=GPU_POOL,
    description="Dataset analysis of the curated pairs (pictures, numbers, comparison across snapshots) and "
    "Chinese-CLIP retrieval / zero-shot results on benchmark sets.",
)
def benchmark_results(context: dg.AssetExecutionContext, storage: StorageResource, clip_model: ClipModelResource,
                      clip_filtered_pairs: TableManifest, clip_embeddings: TableManifest) -> dg.MaterializeResult:
    settings = get_settings()
    store = storage.store()
    snapshot = context.partition_key
    if settings.benchmark_sets_dir is not None:
        discover_sets(settings.benchmark_sets_dir)  # a wrong path fails now, before any work
    pairs = curated_pairs(store, clip_filtered_pairs, clip_embeddings, snapshot)
    vectors = from_binary(pairs["image_embedding"].to_list()).astype(np.float32)
    analysis = analyse(pairs["text"].to_list(), pairs["orig_width"].to_numpy(), pairs["orig_height"].to_numpy(),
                       pairs["clip_score"].to_numpy() * settings.clip_score_scale, vectors, settings.analysis_kmeans_clusters)
    clip = clip_model.load()
    if clip.random_weights:
        context.log.warning(RANDOM_WEIGHTS_WARNING)
    evaluation, smoke = _evaluate(settings, clip_model, clip, store, pairs)
    if smoke:
        context.log.warning(SMOKE_WARNING)
    results = {"snapshot": snapshot, "analysis": analysis.key_numbers(),
               "histograms": {k: h.as_dict() for k, h in analysis.histograms().items()},
               "cluster_sizes": analysis.cluster_sizes.tolist(), "part_of_speech": analysis.pos,
               # timings vary run to run: they go to the metadata, not into the stored (reproducible) results
               "evaluation": [{k: v for k, v in e.items() if k != "seconds"} for e in evaluation],
               "model": f"Chinese-CLIP {clip.arch} ({clip.source})",
               "random_weights": clip.random_weights, "smoke_test": smoke,
               "benchmark_sets_dir": str(settings.benchmark_sets_dir) if settings.benchmark_sets_dir else None}
    put_json(store, results_key(snapshot), results)
    # a partition like any other: a manifest lists what it owns (so nothing under datasets/ is unaccounted for)
    commit_table(store, TableManifest(ASSET, snapshot, (), 0, {}, {"results": results_key(snapshot)},
                                      (results_key(snapshot),)))
    by_snapshot = stored_results(store)
    metadata: dict[str, object] = {}
    warnings = ([f"**{RANDOM_WEIGHTS_WARNING}**"] if clip.random_weights else []) + ([f"**{SMOKE_WARNING}**"] if smoke else [])
    if warnings:
        metadata["WARNING"] = dg.MetadataValue.md("\n\n".join(warnings))
    metadata |= {
        "pairs": analysis.pairs,
        **analysis_pictures(analysis, snapshot, settings.clip_score_scale),
        "evaluation": dg.MetadataValue.md(evaluation_table(evaluation)),
        "model": results["model"],
        "random_weights": clip.random_weights,
        "smoke_test": smoke,
        "comparison_across_snapshots": dg.MetadataValue.md(comparison_table(snapshot, by_snapshot, list(results["analysis"]))),
        **{f"analysis/{k}": float(v) for k, v in analysis.key_numbers().items()},
        "results": dg.MetadataValue.text(store.uri(results_key(snapshot))),
    }
    return dg.MaterializeResult(metadata=metadata)
