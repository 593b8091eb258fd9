"""The image stage on a sample snapshot: download over HTTP through the SSRF guard, filters, dedup."""

import json
from collections import defaultdict

import dagster as dg
import polars as pl
import pytest

from danqing_assets.definitions import ALL_ASSETS
from danqing_assets.demo import sample_crawl_environment
from danqing_assets.partitions import register_snapshots
from danqing_assets.resources.clip import ClipModelResource
from danqing_assets.resources.common_crawl import CommonCrawlResource
from danqing_assets.resources.io_manager import ObjectStoreIOManager
from danqing_assets.resources.shards import read_members
from danqing_assets.resources.storage import StorageResource
from danqing_assets.resources.tables import load_manifest, read_table
from danqing_assets.settings import get_settings

SNAPSHOT = "CC-MAIN-2026-08"
UP_TO_IMAGES = ["raw_pairs", "text_filtered_pairs", "text_rejected_pairs", "downloaded_images",
                "image_download_failures", "image_filtered_pairs", "image_rejected_pairs"]
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
EXPECTED_REASON = {
    "missing_404": {"download:http_status:404"},
    "robots_disallowed": {"download:robots_disallowed"},
    "broken_truncated": {"download:decode:truncated_image", "download:decode:corrupt_image"},
    "broken_random": {"download:not_an_image"},
    "not_an_image": {"download:not_an_image"},
    "blank": {"visual:low_pixel_std"},
    "tiny": {"visual:too_small"},
    "extreme_aspect": {"visual:aspect_ratio"},
    "blurred": {"visual:blurry"},
}


@pytest.fixture
def sample_env(monkeypatch, sample_server):
    for key, value in sample_crawl_environment(sample_server.port, get_settings().sample_host_suffix).items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()


def materialise(storage, server, instance):
    resources = {
        "storage": storage,
        "common_crawl": CommonCrawlResource(base_url=server.base_url, collinfo_url=server.base_url + "collinfo.json"),
        "io_manager": ObjectStoreIOManager(storage=storage),
        "clip_model": ClipModelResource(arch="RN50", allow_random_weights=True),  # not run: the selection stops before it
    }
    result = dg.materialize(ALL_ASSETS, selection=UP_TO_IMAGES, partition_key=SNAPSHOT, instance=instance,
                            resources=resources, run_config=QUIET)
    assert result.success
    return {e.event_specific_data.materialization.asset_key.to_user_string(): e.event_specific_data.materialization.metadata
            for e in result.get_asset_materialization_events()}


def test_images_flow_through_download_filters_and_dedup(tmp_path, sample_mirror, sample_server, sample_env):
    truth = json.loads(sample_mirror.manifest_path.read_text())["images"]
    storage = StorageResource(kind="local", root=str(tmp_path / "store"))
    store = storage.store()
    with dg.instance_for_test() as instance:
        register_snapshots(instance, [SNAPSHOT])
        meta = materialise(storage, sample_server, instance)

        text = read_table(store, load_manifest(store, "text_filtered_pairs", SNAPSHOT))
        kept_manifest = load_manifest(store, "image_filtered_pairs", SNAPSHOT)
        kept = read_table(store, kept_manifest)
        rejected = read_table(store, load_manifest(store, "image_rejected_pairs", SNAPSHOT))
        index = read_table(store, load_manifest(store, "downloaded_images", SNAPSHOT))
        failures = read_table(store, load_manifest(store, "image_download_failures", SNAPSHOT))

        # every image URL of the text stage ends as a stored image or a failure with a reason
        assert set(index["url"]) | set(failures["url"]) == set(text["url"])
        assert not set(index["url"]) & set(failures["url"])
        assert text.height == kept.height + rejected.height
        steps = kept_manifest.stats["steps"]
        assert steps[0][1] == text.height and steps[-1][2] == kept.height
        assert all(a[2] == b[1] for a, b in zip(steps, steps[1:]))

        # each flawed image is dropped for its flaw
        reasons = defaultdict(set)
        for url, reason in rejected.select("url", "reason").iter_rows():
            reasons[truth[url]["kind"] if url in truth else "missing_404"].add(reason)
        for kind, expected in EXPECTED_REASON.items():
            if kind in reasons:
                assert reasons[kind] <= expected, (kind, reasons[kind])
        assert {"download:http_status:404", "download:robots_disallowed", "visual:blurry", "visual:too_small"} <= set(
            rejected["reason"])
        kept_kinds = {truth[u]["kind"] for u in kept["url"]}
        assert not kept_kinds & set(EXPECTED_REASON)
        # a picture and its near/exact duplicate are never both kept
        kept_urls = set(kept["url"])
        pairs = [(u, v["duplicate_of"]) for u, v in truth.items() if v.get("duplicate_of") and v["kind"] != "srcset_variant"]
        assert pairs and not any(a in kept_urls and b in kept_urls for a, b in pairs)
        assert "near_duplicate" in set(rejected["reason"])

        # stored shards are real WebDataset tars whose members match the index
        row = kept.row(0, named=True)
        members = read_members(store, row["shard"], {row["member"], row["member"].replace(".jpg", ".json")})
        assert members[row["member"]][:3] == b"\xff\xd8\xff"
        assert json.loads(members[row["member"].replace(".jpg", ".json")])["url"] == row["url"]
        assert index["width"].max() <= get_settings().image_max_side

        # UI metadata
        images_meta = meta["downloaded_images"]
        assert "refused: robots_disallowed" in images_meta["download_funnel"].value
        assert images_meta["resolution_histogram"].value.startswith("![shortest-edge histogram](data:image/png;base64,")
        assert meta["image_filtered_pairs"]["contact_sheet"].value.startswith("![kept images and rejects per reason](data:image/jpeg")

        # a second run downloads nothing new: stored images and final failures are carried over
        first_shards = set(load_manifest(store, "downloaded_images", SNAPSHOT).files)
        meta = materialise(storage, sample_server, instance)
        again = load_manifest(store, "downloaded_images", SNAPSHOT)
        assert again.stats["counts"].get("ok", 0) == 0 and again.rows == index.height
        assert set(again.files) == first_shards
        assert read_table(store, load_manifest(store, "image_filtered_pairs", SNAPSHOT)).sort("uid").equals(kept.sort("uid"))
        assert pl.Series(failures["retryable"]).sum() == 0  # nothing in the sample fails transiently
