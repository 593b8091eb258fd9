"""The release: takedown lists, gates on injected defects, and the sample crawl's release read by the ecosystem."""

import hashlib
import io
import json
import tarfile
from urllib.parse import urlsplit

import dagster as dg
import imagehash
import numpy as np
import polars as pl
import pytest
from PIL import Image

from danqing_assets.assets.release import build_release
from danqing_assets.curation.release.gates import GATES, inspect_shards, run_gates
from danqing_assets.curation.release.schema import RELEASE_SCHEMA
from danqing_assets.curation.release.takedowns import (InvalidTakedownList, Takedowns, parse_takedown_list,
                                                       takedown_rules)
from danqing_assets.resources.shards import ShardWriter
from danqing_assets.resources.storage import LocalObjectStore, get_json, read_parquet
from danqing_assets.resources.tables import load_manifest, read_table
from danqing_assets_tests.curated_sample import NEW, OLD, environment, materialise, metadata_by_asset

SNAPSHOT = "CC-MAIN-2030-01"
EMPTY = pl.DataFrame(schema={"uid": pl.String, "sha256": pl.String, "snapshot": pl.String})


# --- takedown lists ----------------------------------------------------------------------------------


def test_a_takedown_list_is_parsed_strictly():
    takedowns = parse_takedown_list(
        "# removal requests\n"
        "url https://img.example.com/a.jpg#frag   # the URL keeps its fragment\n"
        "domain Example.ORG.\n"
        "domain 例子.测试\n"
        f"sha256 {'AB' * 32}\n"
        "phash 0xC3D2E1F0A9B8C7D6\n\n")
    assert takedowns.urls == {"https://img.example.com/a.jpg#frag"}
    assert takedowns.domains == {"example.org", "xn--fsqu00a.xn--0zwm56d"}
    assert takedowns.sha256 == {"ab" * 32} and takedowns.phashes == (0xC3D2E1F0A9B8C7D6,)
    assert Takedowns.from_frame(takedowns.to_frame()) == takedowns
    for bad, message in [("url ftp://x/y", "line 1: 'ftp://x/y' is not an http"), ("domain a/b", "not a host name"),
                         ("sha256 abc", "64 hex digits"), ("phash 123", "16 hex digits"), ("block me", "expected")]:
        with pytest.raises(InvalidTakedownList, match=message):
            parse_takedown_list(bad)


def test_takedown_rules_match_urls_domains_and_hashes_and_nothing_else():
    frame = pl.DataFrame({
        "url": ["https://cdn.example.org/1.jpg", "https://evil-example.org/2.jpg", "https://a.test/3.jpg",
                "https://a.test/4.jpg", "https://a.test/5.jpg", "https://a.test/6.jpg"],
        "page_url": ["https://x.test/", "https://x.test/", "https://blog.example.org/p", "https://x.test/",
                     "https://x.test/", "https://x.test/"],
        "sha256": ["0" * 64, "1" * 64, "2" * 64, "f" * 64, "3" * 64, "4" * 64],
        "phash": ["0000000000000000", "00000000000000ff", "0000000000000000", "0000000000000000",
                  "ffff0000ffff0003", "ffff0000ffff00ff"],
    })
    takedowns = parse_takedown_list(f"domain example.org\nsha256 {'f' * 64}\nphash ffff0000ffff0000")
    # the phash entry matches at distance 2, not at 8; evil-example.org is not a subdomain of example.org
    assert takedown_rules(frame, takedowns, 4).to_list() == ["domain", None, "domain", "sha256", "phash", None]


# --- gates on a small release with injected defects -----------------------------------------------------


def jpeg(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (40, 48, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def curated_pairs(store, n: int = 7) -> pl.DataFrame:
    """Rows as clip_filtered_pairs holds them, with their images in a downloaded-images shard."""
    source = f"datasets/downloaded_images/{SNAPSHOT}/shards/source-0.tar"
    rows = []
    with ShardWriter(store, source) as writer:
        for i in range(n):
            data = jpeg(i)
            member = writer.add(f"img{i}", data, {})
            phash = int(str(imagehash.phash(Image.open(io.BytesIO(data)))), 16)
            rows.append({"uid": f"uid{i:02d}", "url": f"https://img{i}.pics.test/{i}.jpg", "alt_text": f"原文{i}",
                         "text": f"一张图片{i}", "page_url": f"https://site.test/page{i}.html", "snapshot": SNAPSHOT,
                         "warc_path": "crawl-data/x.warc.gz", "warc_offset": 100 * i, "fetch_date": "2030-01-01",
                         "width": 48, "height": 40, "orig_width": 48, "orig_height": 40,
                         "sha256": hashlib.sha256(data).hexdigest(),
                         "phash": np.array([phash], dtype=np.uint64).view(np.int64)[0].item(),
                         "clip_score": 0.3, "shard": source, "member": member})
        writer.commit()
    return pl.DataFrame(rows)


def built(tmp_path, takedowns: Takedowns = Takedowns(), n: int = 7):
    store = LocalObjectStore(tmp_path / "store")
    manifest, removed = build_release(store, SNAPSHOT, curated_pairs(store, n), takedowns, version="v1",
                                      shard_samples=3, phash_max_distance=4)
    return store, manifest, removed


def gates(store, manifest, takedowns=Takedowns(), earlier=EMPTY, frame=None):
    frame = read_parquet(store, manifest.parts[0]) if frame is None else frame
    base = manifest.stats["base"]
    seen = inspect_shards([(key.removeprefix(base + "/"), store.local_path(key)) for key in manifest.files])
    return {r.name: r for r in run_gates(frame, seen, earlier, takedowns)}


def rewrite_member(path, member_name, new_bytes=None):
    """Rewrite a tar shard with one member replaced (or dropped when ``new_bytes`` is None)."""
    with tarfile.open(path) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    with tarfile.open(path, "w") as tar:
        for member, data in members:
            if member.name == member_name:
                if new_bytes is None:
                    continue
                data = new_bytes
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))


def failing(results) -> set[str]:
    return {name for name, r in results.items() if not r.passed}


def test_a_clean_release_passes_every_gate_and_is_laid_out_as_documented(tmp_path):
    store, manifest, removed = built(tmp_path)
    results = gates(store, manifest)
    assert list(results) == list(GATES) and failing(results) == set()
    assert manifest.rows == 7 and len(manifest.files) == 3 and removed.height == 0  # 3 + 3 + 1 samples
    frame = read_parquet(store, manifest.parts[0])
    assert dict(frame.schema) == RELEASE_SCHEMA and frame["shard"].n_unique() == 3
    again, _ = build_release(store, SNAPSHOT, curated_pairs(store), Takedowns(), version="v1", shard_samples=3,
                             phash_max_distance=4)
    assert again.stats["content_id"] == manifest.stats["content_id"] and again.stats["files"] == manifest.stats["files"]


def test_gates_fail_on_a_duplicated_uid_in_the_snapshot_or_in_an_earlier_release(tmp_path):
    store, manifest, _ = built(tmp_path)
    frame = read_parquet(store, manifest.parts[0])
    doubled = frame.with_columns(uid=pl.when(pl.col("uid") == "uid03").then(pl.lit("uid02")).otherwise(pl.col("uid")))
    assert "uids_unique" in failing(gates(store, manifest, frame=doubled))
    earlier = pl.DataFrame({"uid": ["uid05"], "sha256": ["x"], "snapshot": ["CC-MAIN-2029-50"]})
    result = gates(store, manifest, earlier=earlier)["uids_unique"]
    assert not result.passed and result.examples == ("uid05 also in CC-MAIN-2029-50",)


def test_gates_fail_on_a_missing_tar_member(tmp_path):
    store, manifest, _ = built(tmp_path)
    rewrite_member(store.local_path(manifest.files[1]), "uid04.jpg")
    result = gates(store, manifest)["tar_members_match_rows"]
    assert not result.passed and result.failures == 1 and "uid04.jpg missing" in result.examples[0]


def test_gates_fail_on_a_corrupt_image(tmp_path):
    store, manifest, _ = built(tmp_path)
    path = store.local_path(manifest.files[0])
    with tarfile.open(path) as tar:
        good = tar.extractfile("uid01.jpg").read()
    rewrite_member(path, "uid01.jpg", good[: len(good) // 3])
    results = gates(store, manifest)
    assert failing(results) == {"images_decode"} and "uid01.jpg" in results["images_decode"].examples[0]


def test_gates_fail_on_a_blocklisted_domain_and_on_an_image_an_earlier_snapshot_released(tmp_path):
    store, manifest, _ = built(tmp_path)
    result = gates(store, manifest, takedowns=parse_takedown_list("domain img3.pics.test"))["no_blocklisted_domain"]
    assert not result.passed and result.failures == 1 and "uid03" in result.examples[0]
    frame = read_parquet(store, manifest.parts[0])
    earlier = pl.DataFrame({"uid": ["other"], "sha256": [frame["sha256"][2]], "snapshot": ["CC-MAIN-2029-50"]})
    assert failing(gates(store, manifest, earlier=earlier)) == {"no_cross_snapshot_duplicates"}


def test_gates_fail_when_the_schema_differs_from_the_documented_one(tmp_path):
    store, manifest, _ = built(tmp_path)
    frame = read_parquet(store, manifest.parts[0]).drop("page_url").with_columns(pl.col("width").cast(pl.Int64))
    result = gates(store, manifest, frame=frame)["schema_as_documented"]
    assert not result.passed and result.failures == 2


def test_a_takedown_removes_exactly_the_listed_items(tmp_path):
    store = LocalObjectStore(tmp_path / "store")
    pairs = curated_pairs(store)
    phash = np.array([pairs["phash"][4]], dtype=np.int64).view(np.uint64)[0]
    takedowns = parse_takedown_list(f"url https://img1.pics.test/1.jpg\ndomain img2.pics.test\n"
                                    f"sha256 {pairs['sha256'][3]}\nphash {int(phash):016x}")
    manifest, removed = build_release(store, SNAPSHOT, pairs, takedowns, version="v1", shard_samples=3,
                                      phash_max_distance=4)
    assert dict(zip(removed["uid"], removed["rule"])) == {"uid01": "url", "uid02": "domain", "uid03": "sha256",
                                                          "uid04": "phash"}
    assert sorted(read_parquet(store, manifest.parts[0])["uid"]) == ["uid00", "uid05", "uid06"]
    assert [r["uid"] for r in manifest.stats["takedowns_removed"]] == ["uid01", "uid02", "uid03", "uid04"]
    assert failing(gates(store, manifest, takedowns)) == set()


# --- the sample crawl's release ------------------------------------------------------------------------


def test_the_sample_release_is_published_with_a_manifest_and_a_card(curated_sample):
    store = curated_sample.store()
    manifest = get_json(store, "releases/v1/manifest.json")
    assert sorted(manifest["snapshots"]) == [OLD, NEW] and manifest["unpublished"] == {}
    entries = manifest["snapshots"]
    assert manifest["totals"]["pairs"] == sum(e["rows"] for e in entries.values()) > 0
    uids = {s: set(pl.read_parquet(curated_sample.root / "releases/v1" / e["metadata"][0])["uid"]) for s, e in entries.items()}
    assert uids[OLD] and uids[NEW] and uids[OLD].isdisjoint(uids[NEW])
    for entry in entries.values():
        for relative, info in entry["files"].items():
            data = (curated_sample.root / "releases/v1" / relative).read_bytes()
            assert len(data) == info["bytes"] and hashlib.sha256(data).hexdigest() == info["sha256"]
        assert [stage for stage, _ in entry["funnel"]][0] == "raw pairs" and entry["funnel"][-1][1] == entry["rows"]
    assert "RANDOMLY INITIALISED" in dict(curated_sample.steps)[f"rebuild {NEW}"]["release"]["WARNING"].value
    card = store.get_bytes("releases/v1/README.md").decode()
    assert "RANDOMLY INITIALISED" in card and "remain under the licences of their owners" in card
    assert f"| **total** | {manifest['totals']['pairs']:,} |" in card
    # before the earlier snapshot's index was rebuilt, the later one was held back, not published with duplicates
    held = dict(curated_sample.steps)[f"all {OLD}"]["release_manifest"]["unpublished"].value
    assert NEW in held and "repeat an earlier snapshot" in held[NEW]


def test_the_release_loads_with_webdataset_polars_and_hugging_face_datasets(curated_sample, tmp_path, monkeypatch):
    import datasets
    import webdataset as wds

    root = curated_sample.root / "releases/v1"
    manifest = json.loads((root / "manifest.json").read_text())
    entry = manifest["snapshots"][OLD]
    parquet = [str(root / p) for p in entry["metadata"]]
    meta = pl.read_parquet(parquet)
    samples = list(wds.WebDataset([str(root / s) for s in entry["shards"]], shardshuffle=False).decode("pil")
                   .to_tuple("__key__", "jpg", "json", "txt"))
    assert [key for key, *_ in samples] == meta["uid"].to_list()
    by_uid = {row["uid"]: row for row in meta.iter_rows(named=True)}
    for key, image, info, text in samples:
        assert image.size == (by_uid[key]["width"], by_uid[key]["height"])
        assert info["url"] == by_uid[key]["url"] and text == by_uid[key]["text"]
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    hf = datasets.load_dataset("parquet", data_files=parquet, split="train", cache_dir=str(tmp_path / "hf-cache"))
    assert hf.num_rows == meta.height and hf[0]["uid"] == meta["uid"][0] and set(hf.column_names) == set(RELEASE_SCHEMA)


def test_a_takedown_republishes_without_downloading_or_embedding_again(curated_sample, tmp_path):
    from danqing_assets.partitions import register_snapshots

    root = curated_sample.copy_store(tmp_path / "store")
    store = LocalObjectStore(root)
    before = get_json(store, "releases/v1/manifest.json")
    old_meta = pl.read_parquet(root / "releases/v1" / before["snapshots"][OLD]["metadata"][0])
    new_meta = pl.read_parquet(root / "releases/v1" / before["snapshots"][NEW]["metadata"][0])
    url, domain = old_meta["url"][0], urlsplit(new_meta["page_url"][0]).hostname
    listed = tmp_path / "takedowns.txt"
    listed.write_text(f"url {url}\ndomain {domain}\n")

    def hit(frame):
        on_domain = [any(h == domain or h.endswith("." + domain) for h in (urlsplit(u).hostname, urlsplit(p).hostname))
                     for u, p in frame.select("url", "page_url").iter_rows()]
        return set(frame.filter(pl.Series(on_domain) | (pl.col("url") == url) | (pl.col("page_url") == url))["uid"])

    expected = {OLD: hit(old_meta), NEW: hit(new_meta)}
    assert old_meta["uid"][0] in expected[OLD] and expected[NEW]
    upstream = {p.relative_to(root): p.stat().st_mtime_ns for p in (root / "datasets").rglob("*")
                if p.is_file() and "takedown_list" not in str(p)}
    with environment({**curated_sample.env, "DANQING_TAKEDOWN_LIST_PATH": str(listed)}), dg.instance_for_test() as instance:
        register_snapshots(instance, [OLD, NEW])
        materialise(instance, root, curated_sample.server, None, selection=["takedown_list"])
        for snapshot in (OLD, NEW):
            materialise(instance, root, curated_sample.server, snapshot, selection=["release"])
        result = materialise(instance, root, curated_sample.server, None, selection=["release_manifest"])
        totals = metadata_by_asset(result)["release_manifest"]["totals"].value
        assert totals["takedowns_removed"] == len(expected[OLD]) + len(expected[NEW])
    after = get_json(store, "releases/v1/manifest.json")
    assert {s: {r["uid"] for r in e["takedowns_removed"]} for s, e in after["snapshots"].items()} == expected
    for snapshot in (OLD, NEW):
        assert after["snapshots"][snapshot]["rows"] == before["snapshots"][snapshot]["rows"] - len(expected[snapshot])
    # nothing upstream was touched: no download, decode or embedding ran again
    assert {p.relative_to(root): p.stat().st_mtime_ns for p in (root / "datasets").rglob("*")
            if p.is_file() and "takedown_list" not in str(p)} == upstream
    # the superseded content directories are gone; the published ones are complete
    for snapshot, entry in after["snapshots"].items():
        objects = {key.split("/")[3] for key in store.list(f"releases/v1/{snapshot}/")}
        assert objects == {"_manifest.json", entry["content_id"]}


def test_a_failing_gate_stops_the_release_from_being_published(curated_sample, tmp_path):
    from danqing_assets.partitions import register_snapshots

    root = curated_sample.copy_store(tmp_path / "store")
    store = LocalObjectStore(root)
    before = get_json(store, "releases/v1/manifest.json")
    meta = pl.read_parquet(root / "releases/v1" / before["snapshots"][OLD]["metadata"][0])
    victim = meta["uid"][0]
    curated = read_table(store, load_manifest(store, "image_filtered_pairs", OLD))
    source = curated.filter(pl.col("uid") == victim).row(0, named=True)
    path = store.local_path(source["shard"])
    with tarfile.open(path) as tar:
        good = tar.extractfile(source["member"]).read()
    rewrite_member(path, source["member"], good[:200])  # the stored image is damaged after curation
    with environment(curated_sample.env), dg.instance_for_test() as instance:
        register_snapshots(instance, [OLD, NEW])
        result = materialise(instance, root, curated_sample.server, OLD, selection=["release", "release_manifest"],
                             raise_on_error=False)
        assert not result.success
        checks = {e.event_specific_data.check_name: e.event_specific_data
                  for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}
        assert not checks["images_decode"].passed and checks["tar_members_match_rows"].passed
        assert f"{victim}.jpg" in checks["images_decode"].metadata["examples"].value
        assert "release_manifest" not in metadata_by_asset(result)
        # run on its own, the manifest still refuses the failed build and keeps the last good one published
        materialise(instance, root, curated_sample.server, None, selection=["release_manifest"])
    after = get_json(store, "releases/v1/manifest.json")
    assert after["snapshots"][OLD] == before["snapshots"][OLD]
    assert after["unpublished"][OLD].startswith("gates failed: images_decode")


def test_releasing_again_gives_byte_identical_release_files(curated_sample, tmp_path):
    from danqing_assets.partitions import register_snapshots

    root = curated_sample.copy_store(tmp_path / "store")
    before = {p.relative_to(root): p.read_bytes() for p in (root / "releases").rglob("*") if p.is_file()}
    with environment(curated_sample.env), dg.instance_for_test() as instance:
        register_snapshots(instance, [OLD, NEW])
        for snapshot in (OLD, NEW):
            materialise(instance, root, curated_sample.server, snapshot, selection=["release"])
        materialise(instance, root, curated_sample.server, None, selection=["release_manifest"])
    after = {p.relative_to(root): p.read_bytes() for p in (root / "releases").rglob("*") if p.is_file()}
    assert sorted(after) == sorted(before) and after == before
