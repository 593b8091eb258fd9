"""Code versions derived from settings, and the automation condition that acts on them.

Each asset's ``code_version`` is its stage's logic version plus a hash of the
settings that change what the stage writes (thresholds, word lists, model), so
setting ``DANQING_CLIP_BAND_MIN`` changes only ``clip_filtered_pairs``'s
version. Settings that change how fast or where a stage runs (concurrency,
timeouts, shard sizes, endpoints) are left out: changing them must not recompute
a dataset. Versions are computed when the code location loads, so a changed
setting takes effect — and is noticed — when the code location is reloaded.

:func:`follows_upstream_and_settings` is the automation condition of every
per-snapshot asset: a partition is requested when an upstream partition of the
same snapshot was re-materialised (or is requested in the same tick), or, for
partitions already materialised, when the asset's code version changed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from .settings import Settings, get_settings


@dataclass(frozen=True)
class Stage:
    logic: str  # bump when the stage's code changes what it writes
    settings: tuple[str, ...]  # Settings fields that change what it writes


STAGES: dict[str, Stage] = {
    "raw_pairs": Stage("1", (
        "warc_files_per_snapshot", "page_languages", "max_page_bytes", "max_images_per_page", "max_alt_chars",
        "max_url_chars",
    )),
    "text_filtered_pairs": Stage("1", (
        "text_min_words", "text_max_words", "text_min_han_ratio", "text_min_langid_percent", "text_max_unk_tokens",
        "text_min_entropy_bits", "domain_blocklist_file", "generic_alts_file", "sensitive_words_file",
        "text_safety_classifier", "text_safety_model_path", "text_safety_threshold",
    )),
    "downloaded_images": Stage("1", (
        "download_user_agent", "download_max_bytes", "download_max_redirects", "download_respect_robots",
        "image_max_pixels", "image_max_side", "image_jpeg_quality",
    )),
    "image_filtered_pairs": Stage("1", (
        "image_min_aspect", "image_max_aspect", "image_min_short_edge", "image_min_pixel_std",
        "image_min_laplacian_var", "image_min_entropy", "phash_max_distance", "image_safety_classifier",
        "image_safety_model_path", "image_safety_threshold",
    )),
    "clip_embeddings": Stage("1", ("clip_arch", "clip_checkpoint", "clip_download_root", "clip_allow_random_weights")),
    "clip_filtered_pairs": Stage("1", ("clip_score_scale", "clip_band_min", "clip_band_max", "semantic_max_distance")),
    "dedup_index": Stage("1", ("phash_max_distance", "semantic_max_distance")),
    "takedown_list": Stage("1", ("takedown_list_path",)),  # a file: its content counts
    "release": Stage("1", ("release_version", "release_shard_samples")),
    "release_manifest": Stage("1", ("release_version", "release_licence_notice")),
    "benchmark_results": Stage("1", (
        "benchmark_sets_dir", "benchmark_retrieval_split", "benchmark_prompt_templates", "benchmark_smoke_pairs",
        "analysis_kmeans_clusters", "clip_score_scale", "release_version",
    )),
}

# Assets one step writes together share their stage's version.
ASSET_STAGES: dict[str, str] = {
    "raw_pairs": "raw_pairs",
    "text_filtered_pairs": "text_filtered_pairs",
    "text_rejected_pairs": "text_filtered_pairs",
    "downloaded_images": "downloaded_images",
    "image_download_failures": "downloaded_images",
    "image_filtered_pairs": "image_filtered_pairs",
    "image_rejected_pairs": "image_filtered_pairs",
    "clip_embeddings": "clip_embeddings",
    "clip_filtered_pairs": "clip_filtered_pairs",
    "clip_rejected_pairs": "clip_filtered_pairs",
    "dedup_index": "dedup_index",
    "takedown_list": "takedown_list",
    "release": "release",
    "release_manifest": "release_manifest",
    "benchmark_results": "benchmark_results",
}


def _setting_value(settings: Settings, name: str) -> object:
    value = getattr(settings, name)
    if isinstance(value, Path):
        # A user word list counts by its content: editing the file is a change of setting.
        try:
            return {"path": str(value), "sha256": hashlib.sha256(value.read_bytes()).hexdigest()}
        except OSError:
            return {"path": str(value), "sha256": None}
    return value


def settings_fingerprint(stage: str, settings: Settings) -> dict[str, object]:
    """The settings that change what ``stage`` writes, with their values."""
    return {name: _setting_value(settings, name) for name in STAGES[stage].settings}


def asset_code_version(asset: str, settings: Settings | None = None) -> str:
    """``<logic version>-<hash of the stage's settings>``, e.g. ``1-3f2a9c0d1b7e``."""
    settings = settings or get_settings()
    stage = ASSET_STAGES[asset]
    blob = json.dumps(settings_fingerprint(stage, settings), sort_keys=True, default=str)
    return f"{STAGES[stage].logic}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


def follows_upstream_and_settings() -> dg.AutomationCondition:
    """Request a partition when its upstream partition changed or, if materialised, when its settings changed.

    Unlike ``AutomationCondition.eager()`` it does not request partitions because
    they are newly missing: a new snapshot's ingest run is requested by the
    new-crawl sensor (or by hand), and everything downstream follows from there.
    """
    condition = dg.AutomationCondition
    settings_changed = (condition.code_version_changed() & ~condition.missing()).with_label("settings_changed")
    return (
        (condition.any_deps_updated() | settings_changed).since_last_handled()
        & ~condition.any_deps_missing()
        & ~condition.any_deps_in_progress()
        & ~condition.in_progress()
    ).with_label("follows_upstream_and_settings")
