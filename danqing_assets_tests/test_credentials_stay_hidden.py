"""Credentials in image URLs never reach logs, metadata, the UI's event log or the object store.

A crawl holding a page whose images carry user:password and token credentials is materialised through
the text stage; the secrets must appear nowhere Dagster or the store kept, while the drops are counted.
"""

import gzip

import dagster as dg

from danqing_assets_tests.hostile_corpus import html, img, page_warc

SNAPSHOT = "CC-MAIN-2030-01"
SECRETS = ("hunter2", "tok3n-s3cret", "p4ss")


def crawl_with_credentials(root):
    warc = f"crawl-data/{SNAPSHOT}/segments/1/warc/CC-MAIN-00000.warc.gz"
    body = html(img(b"http://admin:hunter2@img.example.cn/a.jpg"), img(b"https://tok3n-s3cret@img.example.cn/b.jpg"),
                img(b"//user:p4ss@img.example.cn/c.jpg"), img(b"https://img.example.cn/ok.jpg"))
    (root / warc).parent.mkdir(parents=True)
    (root / warc).write_bytes(page_warc(body))
    (root / f"crawl-data/{SNAPSHOT}/warc.paths.gz").write_bytes(gzip.compress(warc.encode() + b"\n"))


def test_credentials_in_image_urls_never_surface(tmp_path, monkeypatch, caplog):
    from danqing_assets.definitions import ALL_ASSETS
    from danqing_assets.resources.clip import ClipModelResource
    from danqing_assets.partitions import register_snapshots
    from danqing_assets.resources.common_crawl import CommonCrawlResource
    from danqing_assets.resources.io_manager import ObjectStoreIOManager
    from danqing_assets.resources.storage import StorageResource
    from danqing_assets.settings import get_settings

    crawl, store_root = tmp_path / "crawl", tmp_path / "store"
    crawl.mkdir()
    crawl_with_credentials(crawl)
    monkeypatch.setenv("DANQING_CC_BASE_URL", str(crawl))
    monkeypatch.setenv("DANQING_PAGE_LANGUAGES", "")  # the generated page has no CLD2 record: parse every page
    get_settings.cache_clear()
    storage = StorageResource(kind="local", root=str(store_root))
    resources = {"storage": storage, "io_manager": ObjectStoreIOManager(storage=storage),
                 "common_crawl": CommonCrawlResource.from_settings(),
                 "clip_model": ClipModelResource(arch="RN50", allow_random_weights=True)}  # named by the graph, unused
    with dg.instance_for_test() as instance:
        register_snapshots(instance, [SNAPSHOT])
        result = dg.materialize(ALL_ASSETS, selection=["raw_pairs", "text_filtered_pairs", "text_rejected_pairs"],
                                partition_key=SNAPSHOT, instance=instance, resources=resources)
        assert result.success
        raw = next(e.event_specific_data.materialization for e in result.get_asset_materialization_events()
                   if e.asset_key.to_user_string() == "raw_pairs")
        assert raw.metadata["dagster/row_count"].value == 1  # only the URL without credentials
        assert "url_with_credentials" in str(raw.metadata)
        everything = "\n".join(dg.serialize_value(record) for record in instance.all_logs(result.run_id))
    assert "img.example.cn" in everything  # the check can see URLs where they are shown
    stored = b"".join(p.read_bytes() for p in store_root.rglob("*") if p.is_file())
    assert b"img.example.cn/ok.jpg" in stored
    for secret in SECRETS:
        assert secret not in everything, f"{secret} in the event log"
        assert secret.encode() not in stored, f"{secret} in the object store"
        assert secret not in caplog.text, f"{secret} in the logs"
