"""``raw_pairs`` materialised by Dagster on the sample crawl, served over HTTP, into local and S3 stores."""

import json
import re

import dagster as dg
import pytest

from danqing_assets.assets.raw_pairs import raw_pairs
from danqing_assets.curation.image_links import pair_uid
from danqing_assets.definitions import ALL_ASSETS, defs
from danqing_assets.partitions import cc_snapshots, register_snapshots
from danqing_assets.resources.common_crawl import CommonCrawlResource
from danqing_assets.resources.io_manager import ObjectStoreIOManager
from danqing_assets.resources.storage import StorageResource
from danqing_assets.resources.tables import load_manifest, read_table

SNAPSHOT = "CC-MAIN-2026-08"
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def expected_pairs(mirror, snapshot):
    """Ground truth from the generator: (image URL, caption, page) of every captioned image on Chinese pages."""
    manifest = json.loads(mirror.manifest_path.read_text())
    norm = lambda s: re.sub(r"\s+", " ", s or "").strip()  # noqa: E731
    expected = set()
    for capture in manifest["captures"]:
        if capture.get("snapshot") != snapshot or capture.get("language") not in ("zh", "zh-Hant"):
            continue
        for image in capture.get("images", []):
            text = next((norm(t) for t in (image["alt"], image["figcaption"], image["title"]) if norm(t)), "")
            if text and (image["url"] or "").startswith("http"):
                expected.add((image["url"], text, capture["url"]))
    return expected


def materialise(storage, server, instance, snapshot=SNAPSHOT):
    resources = {
        "storage": storage,
        "common_crawl": CommonCrawlResource(base_url=server.base_url, collinfo_url=server.base_url + "collinfo.json"),
        "io_manager": ObjectStoreIOManager(storage=storage),
    }
    register_snapshots(instance, [snapshot])
    result = dg.materialize([raw_pairs], partition_key=snapshot, instance=instance, resources=resources, run_config=QUIET)
    assert result.success
    return result


def check_partition(store, mirror, snapshot=SNAPSHOT):
    manifest = load_manifest(store, "raw_pairs", snapshot)
    table = read_table(store, manifest)
    assert table.height == manifest.rows
    assert set(zip(table["url"], table["alt_text"], table["page_url"])) == expected_pairs(mirror, snapshot)
    # the uid names the (image URL, text) pair: the same pair on several pages shares it
    assert table["uid"].to_list() == [pair_uid(u, t) for u, t in zip(table["url"], table["alt_text"])]
    assert table["uid"].n_unique() == table.select("url", "alt_text").n_unique() < table.height
    assert set(table["snapshot"]) == {snapshot}
    assert set(table["warc_path"]) == set(mirror.warc_paths[snapshot])
    return manifest, table


def test_raw_pairs_extracts_exactly_the_captioned_images_of_chinese_pages(tmp_path, sample_mirror, sample_server):
    storage = StorageResource(kind="local", root=str(tmp_path / "store"))
    with dg.instance_for_test() as instance:
        result = materialise(storage, sample_server, instance)
    manifest, table = check_partition(storage.store(), sample_mirror)
    assert len(manifest.parts) == len(sample_mirror.warc_paths[SNAPSHOT])  # one shard per WARC file by default

    meta = result.asset_materializations_for_node("raw_pairs")[0].metadata
    assert meta["dagster/row_count"].value == table.height
    assert meta["warc_files"].value == 3 and meta["shards"].value == 3
    skipped = meta["pages_skipped"].value
    for reason in ("language_not_selected", "not_html", "http_status_not_200"):
        assert reason in skipped
    assert "data_uri" in meta["images_dropped"].value and "no_text" in meta["images_dropped"].value
    assert meta["preview"].value.count("\n") == 21  # header, rule and 20 pairs
    # pages declaring gb2312 whose bytes need gb18030 came through
    assert "gb18030" in set(table["page_charset"])


def test_rematerialising_replaces_the_partition_cleanly(tmp_path, sample_mirror, sample_server):
    storage = StorageResource(kind="local", root=str(tmp_path / "store"))
    store = storage.store()
    with dg.instance_for_test() as instance:
        materialise(storage, sample_server, instance)
        first = load_manifest(store, "raw_pairs", SNAPSHOT)
        materialise(storage, sample_server, instance)
    second = load_manifest(store, "raw_pairs", SNAPSHOT)
    assert second.rows == first.rows and set(second.parts).isdisjoint(first.parts)
    on_disk = [k for k in store.list(f"datasets/raw_pairs/{SNAPSHOT}/") if k.endswith(".parquet")]
    assert sorted(on_disk) == sorted(second.parts)  # the first run's parts are gone
    assert not list((tmp_path / "store").rglob("*.tmp-*"))


def test_raw_pairs_on_a_real_s3_server(s3_server, sample_mirror, sample_server):
    storage = StorageResource(kind="s3", endpoint=s3_server.endpoint, bucket="raw-pairs-test",
                              access_key=s3_server.access_key, secret_key=s3_server.secret_key)
    with dg.instance_for_test() as instance:
        materialise(storage, sample_server, instance)
    store = storage.store()
    manifest, _ = check_partition(store, sample_mirror)
    assert store.uri(manifest.parts[0]).startswith("s3://raw-pairs-test/datasets/raw_pairs/")
    assert any(k.startswith("_dagster_io/") for k in store.list(""))  # steps handed values over S3, not local disk
    store.delete_prefix("")


EXPECTED_ASSETS = {"raw_pairs", "text_filtered_pairs", "text_rejected_pairs", "downloaded_images", "image_download_failures",
                   "image_filtered_pairs", "image_rejected_pairs", "clip_embeddings", "clip_filtered_pairs",
                   "clip_rejected_pairs", "dedup_index", "takedown_list", "release", "release_manifest",
                   "benchmark_results"}


def test_the_code_location_loads_and_has_the_expected_shape():
    dg.Definitions.validate_loadable(defs)
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys == EXPECTED_ASSETS
    image_deps = {k.to_user_string() for k in graph.get(dg.AssetKey("image_filtered_pairs")).parent_keys}
    assert image_deps == {"text_filtered_pairs", "downloaded_images", "image_download_failures"}
    unpartitioned = {k.to_user_string() for a in ALL_ASSETS if a.partitions_def is None for k in a.keys}
    assert unpartitioned == {"takedown_list", "release_manifest"}  # one list, one published union
    assert all(a.partitions_def == cc_snapshots for a in ALL_ASSETS if a.partitions_def is not None)
    text_deps = {k.to_user_string() for k in graph.get(dg.AssetKey("text_filtered_pairs")).parent_keys}
    assert text_deps == {"raw_pairs"}
    assert raw_pairs.partitions_def == cc_snapshots and cc_snapshots.name == "cc_snapshots"
    assert set(defs.resources) == {"storage", "common_crawl", "io_manager", "clip_model"}


def test_invalid_snapshot_ids_are_refused_before_they_become_partitions():
    with dg.instance_for_test() as instance:
        with pytest.raises(ValueError, match="not a Common Crawl crawl id"):
            register_snapshots(instance, ["CC-MAIN-2026-08", "2026-08"])
        assert instance.get_dynamic_partitions("cc_snapshots") == []
        assert register_snapshots(instance, ["CC-MAIN-2026-08", "CC-MAIN-2026-08"]) == ["CC-MAIN-2026-08"]
        assert register_snapshots(instance, ["CC-MAIN-2026-08"]) == []
