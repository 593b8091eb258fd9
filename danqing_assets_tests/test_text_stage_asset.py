"""``text_filtered_pairs`` materialised on a sample snapshot: ground truth and a funnel that adds up."""

import json
import re

import dagster as dg

from danqing_assets.assets.raw_pairs import raw_pairs
from danqing_assets.assets.text_filtered_pairs import text_filtered_pairs
from danqing_assets.curation.text.refine import refine_captions
from danqing_assets.partitions import register_snapshots
from danqing_assets.resources.common_crawl import CommonCrawlResource
from danqing_assets.resources.io_manager import ObjectStoreIOManager
from danqing_assets.resources.storage import StorageResource
from danqing_assets.resources.tables import load_manifest, read_table

SNAPSHOT = "CC-MAIN-2026-17"
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
KEEP_KINDS = {"good", "emoji_noise"}


def caption_kinds(mirror, snapshot):
    """{(image URL, caption as found): text kind} for images on Chinese pages, from the generator's manifest."""
    manifest = json.loads(mirror.manifest_path.read_text())
    norm = lambda s: re.sub(r"\s+", " ", s or "").strip()  # noqa: E731
    kinds = {}
    for capture in manifest["captures"]:
        if capture.get("snapshot") == snapshot and capture.get("language") in ("zh", "zh-Hant"):
            for image in capture.get("images", []):
                text = next((norm(t) for t in (image["alt"], image["figcaption"], image["title"]) if norm(t)), "")
                if text and (image["url"] or "").startswith("http"):  # data: URIs never become pairs
                    kinds[(image["url"], text)] = image["text_kind"]
    return kinds


def test_text_stage_keeps_real_captions_drops_the_rest_and_the_funnel_adds_up(tmp_path, sample_mirror, sample_server):
    storage = StorageResource(kind="local", root=str(tmp_path / "store"))
    resources = {
        "storage": storage,
        "common_crawl": CommonCrawlResource(base_url=sample_server.base_url, collinfo_url=sample_server.base_url + "collinfo.json"),
        "io_manager": ObjectStoreIOManager(storage=storage),
    }
    with dg.instance_for_test() as instance:
        register_snapshots(instance, [SNAPSHOT])
        result = dg.materialize([raw_pairs, text_filtered_pairs], partition_key=SNAPSHOT, instance=instance,
                                resources=resources, run_config=QUIET)
    assert result.success
    store = storage.store()
    raw = read_table(store, load_manifest(store, "raw_pairs", SNAPSHOT))
    kept_manifest = load_manifest(store, "text_filtered_pairs", SNAPSHOT)
    kept = read_table(store, kept_manifest)
    rejected = read_table(store, load_manifest(store, "text_rejected_pairs", SNAPSHOT))

    # the funnel adds up: in = out + dropped, overall and per filter
    assert raw.height == kept.height + rejected.height
    steps = kept_manifest.stats["steps"]  # [filter, rows in, rows out] in chain order
    assert steps[0][1] == raw.height and steps[-1][2] == kept.height
    assert all(a[2] == b[1] for a, b in zip(steps, steps[1:]))
    assert sum(kept_manifest.stats["reasons"].values()) == rejected.height

    # against the generator's ground truth
    kinds = caption_kinds(sample_mirror, SNAPSHOT)
    kept_kinds = {kinds[(u, a)] for u, a in zip(kept["url"], kept["alt_text"])}
    assert kept_kinds <= KEEP_KINDS
    wanted = {key for key, kind in kinds.items() if kind in KEEP_KINDS}
    assert {(u, a) for u, a in zip(kept["url"], kept["alt_text"])} == wanted
    dropped_kinds = {kinds[(u, a)] for u, a in zip(rejected["url"], rejected["alt_text"]) if rejected.height}
    assert {"boilerplate", "filename", "url", "numeric", "title_index", "short", "keyword_stuffing"} <= dropped_kinds
    # Traditional captions arrive simplified, decorations stripped
    assert kept["text"].to_list() == refine_captions(kept["alt_text"]).to_list()
    assert not any(re.search(r"[🔥★✨【】]", t) for t in kept["text"])
    assert kept["uid"].n_unique() == kept.height

    meta = {m.asset_key.to_user_string(): m.metadata for m in result.get_asset_materialization_events() and
            [e.event_specific_data.materialization for e in result.get_asset_materialization_events()]}
    text_meta = meta["text_filtered_pairs"]
    assert text_meta["dagster/row_count"].value == kept.height
    assert text_meta["funnel"].value.count("\n") == len(steps) + 1
    inline = text_meta["caption_length_histogram"].value
    assert inline.startswith("![caption length histogram](data:image/png;base64,") and len(inline) < 1000
    assert text_meta["caption_length_chart"].value.startswith("![caption length chart with axes](data:image/png;base64,")
    assert "boilerplate:file_name" in text_meta["rejected_examples"].value
    assert meta["text_rejected_pairs"]["dagster/row_count"].value == rejected.height
