"""The hostile input corpus: every real-world sample and every generated attack, each with its expected outcome.

Real files come from ../shared/realworld; generated ones from :mod:`hostile_corpus`.
Each case names what extraction must produce: pairs kept, pages skipped by reason,
images dropped by reason. Nothing may crash, hang, or write text that is not valid
UTF-8 into a table; nothing built from a hostile string may leave the store's root.
"""

import importlib
import io
import time
from collections import Counter
from pathlib import Path

import polars as pl
import pytest

from danqing_assets.curation.extract_pairs import RAW_PAIRS_SCHEMA, ExtractionConfig, extract_pairs
from danqing_assets.curation.image_links import LinkLimits, extract_image_links
from danqing_assets.resources.storage import LocalObjectStore, read_parquet, safe_key_segment, validate_key, write_parquet
from danqing_assets_tests.hostile_corpus import HOSTILE_KEY_TEXTS, HOSTILE_URL_SRCS, PAGE, generated_warcs, html, img
from danqing_assets_tests.realworld import REALWORLD

READERS = ["fastwarc", "warcio"]
CHINESE = ExtractionConfig()  # the default: only pages CLD2 tagged Chinese
EVERY_PAGE = ExtractionConfig(languages=frozenset())


def extract(data: bytes, config: ExtractionConfig, reader: str):
    config = ExtractionConfig(languages=config.languages, reader=reader)
    return extract_pairs(io.BytesIO(data), snapshot="CC-MAIN-2026-08", warc_path="hostile.warc.gz", config=config)


def assert_storable(table: pl.DataFrame, tmp_path: Path) -> None:
    """The table has the raw_pairs schema, round-trips through parquet, and every string is valid UTF-8."""
    assert dict(table.schema) == RAW_PAIRS_SCHEMA
    store = LocalObjectStore(tmp_path / "store")
    write_parquet(store, "t/part.parquet", table)
    assert read_parquet(store, "t/part.parquet").equals(table)
    for column, dtype in RAW_PAIRS_SCHEMA.items():
        if dtype == pl.String:
            for value in table[column].drop_nulls():
                value.encode("utf-8")  # raises on lone surrogates


# --- real-world files -----------------------------------------------------------------------------------------
# file -> (pairs, pages skipped by reason, WARC read errors) under the default Chinese selection
REAL_WARCS = {
    "resiliparse/warcfile.warc.gz": (17, {"language_not_selected": 4, "no_image_pairs": 8}, 0),
    "resiliparse/clipped.warc.gz": (0, {"truncated_record": 1}, 0),
    "resiliparse/clueweb-quirk.warc.gz": (0, {"no_language_tag": 29}, 0),  # Japanese, WARC/0.18, no CLD2 record
    "jwarc/cc.warc.gz": (0, {"no_language_tag": 1}, 0),
    "whirlwind-python/whirlwind.warc.gz": (0, {"language_not_selected": 1}, 0),
    "whirlwind-python/whirlwind.warc.wat.gz": (0, {}, 0),  # metadata records only: no responses to read
    "whirlwind-python/whirlwind.warc.wet.gz": (0, {}, 0),  # plain-text conversions: no responses
    "whirlwind-python/CC-MAIN-2024-22.warc.paths.gz": (0, {"warc_read_error": 1}, 1),  # a listing, not a WARC
}
# the same files with every page parsed: (pairs, images dropped by reason)
REAL_WARCS_EVERY_PAGE = {
    "resiliparse/warcfile.warc.gz": (30, {"no_image_url": 4, "no_text": 117, "repeated_on_page": 2}),
    "resiliparse/clueweb-quirk.warc.gz": (440, {"no_text": 696, "repeated_on_page": 116}),
    "jwarc/cc.warc.gz": (6, {"no_text": 2}),
    "whirlwind-python/whirlwind.warc.gz": (7, {"no_text": 6}),
}


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("name", sorted(REAL_WARCS))
def test_every_real_warc_has_its_expected_outcome(name, reader, tmp_path):
    pairs, skipped, errors = REAL_WARCS[name]
    table, stats = extract((REALWORLD / name).read_bytes(), CHINESE, reader)
    assert (table.height, dict(stats.pages_skipped), len(stats.read_errors)) == (pairs, skipped, errors)
    assert_storable(table, tmp_path)
    if name in REAL_WARCS_EVERY_PAGE:
        pairs, dropped = REAL_WARCS_EVERY_PAGE[name]
        table, stats = extract((REALWORLD / name).read_bytes(), EVERY_PAGE, reader)
        assert (table.height, dict(stats.images_dropped)) == (pairs, dropped)
        assert_storable(table, tmp_path)


# Every real-world file and the test that asserts its outcome (a new sample must be placed here).
REALWORLD_COVERAGE = {
    "resiliparse/*.warc.gz": "test_hostile_corpus::test_every_real_warc_has_its_expected_outcome",
    "jwarc/*.warc.gz": "test_hostile_corpus::test_every_real_warc_has_its_expected_outcome",
    "whirlwind-python/*.gz": "test_hostile_corpus::test_every_real_warc_has_its_expected_outcome",
    "pillow-test-images/*": "test_image_decode::test_every_file_decodes_or_is_rejected_with_its_expected_reason",
    "imagehash-tests/*.*": "test_near_duplicates::test_real_image_families_cluster_and_distinct_pictures_do_not",
    "gne-zh-news/*.html": "test_image_links::test_every_real_news_page_yields_only_absolute_http_urls",
    "coco-cn/*.txt": "test_text_filters::test_human_written_coco_cn_captions_overwhelmingly_pass",
    "coco-cn/sample_images/*": "test_image_decode::test_metrics_of_a_real_photo_match_plain_numpy",
    "chinese-clip/*": "test_clip_stage::test_a_local_checkpoint_loads_through_cn_clip_and_embeddings_are_deterministic",
    "cc-collinfo/*": "test_crawl_ids::test_every_id_of_the_real_crawl_list_is_valid",
}
NOT_INPUTS = {"LICENSE", "SOURCE.txt", "README.md", "MIT-LICENSE.txt", "LICENSE.frozenlake-commoncrawl"}


def test_every_real_world_file_has_a_test_that_asserts_its_outcome():
    files = [p for p in REALWORLD.rglob("*") if p.is_file() and p.name not in NOT_INPUTS]
    assert len(files) > 100
    unplaced = [str(p.relative_to(REALWORLD)) for p in files if not any(p.match(f"*/{g}") or p.relative_to(REALWORLD).match(g) for g in REALWORLD_COVERAGE)]
    assert unplaced == []
    for target in set(REALWORLD_COVERAGE.values()):
        module, test = target.split("::")
        assert callable(getattr(importlib.import_module(f"danqing_assets_tests.{module}"), test)), target


# --- generated attacks -------------------------------------------------------------------------------------------
CASES = {case.name: case for case in generated_warcs()}


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("name", sorted(CASES))
def test_generated_hostile_warc_has_its_expected_outcome(name, reader, tmp_path):
    case = CASES[name]
    started = time.perf_counter()
    table, stats = extract(case.data, EVERY_PAGE, reader)
    elapsed = time.perf_counter() - started
    skipped = {k: v for k, v in stats.pages_skipped.items() if k != "no_image_pairs"}
    assert (table.height, skipped, dict(stats.images_dropped)) == (case.pairs, case.pages_skipped, case.images_dropped), case.why
    if case.urls is not None:
        assert sorted(table["url"]) == sorted(case.urls)
    assert all(u.startswith(("http://", "https://")) and "@" not in u.split("/")[2] for u in table["url"])
    assert elapsed < 60, f"{name} took {elapsed:.0f} s"  # bounded work whatever the input (generous: shared CPU)
    assert_storable(table, tmp_path)


def test_invalid_utf8_becomes_replacement_characters_not_surrogates(tmp_path):
    table, stats = extract(CASES["invalid_utf8_in_src"].data, EVERY_PAGE, "fastwarc")
    assert stats.charset_sources["undecodable_bytes_replaced"] == 1
    assert any("\ufffd" in u for u in table["url"]) and any("\ufffd" in t for t in table["alt_text"])
    table, _ = extract(CASES["invalid_utf8_in_target_uri"].data, EVERY_PAGE, "fastwarc")
    [page_url] = set(table["page_url"])
    page_url.encode("utf-8")
    assert table["url"].to_list() == [page_url.rsplit("/", 1)[0] + "/cat.jpg"]


@pytest.mark.parametrize("name", sorted(HOSTILE_URL_SRCS))
def test_hostile_image_urls_are_kept_or_dropped_with_their_reason(name):
    src, reason = HOSTILE_URL_SRCS[name]
    drops: Counter[str] = Counter()
    links = extract_image_links(html(img(src)).decode("utf-8", "replace"), PAGE.decode(), drops, LinkLimits())
    assert (drops, len(links)) == ((Counter({reason: 1}), 0) if reason else (Counter(), 1))
    for link in links:
        assert link.url.startswith("https://hostile.example.cn/") and ".." not in link.url


# --- object keys from hostile text ---------------------------------------------------------------------------------
KEY_TEXTS = list(HOSTILE_KEY_TEXTS) + [src for src, _ in HOSTILE_URL_SRCS.values()]


def test_keys_built_from_hostile_urls_stay_inside_the_store(tmp_path):
    root = tmp_path / "store"
    store = LocalObjectStore(root)
    segments = [safe_key_segment(text) for text in KEY_TEXTS]
    assert len(set(segments)) == len(set(KEY_TEXTS))  # injective: two URLs never share an object
    for text, segment in zip(KEY_TEXTS, segments, strict=True):
        assert "/" not in segment and "\\" not in segment and not segment.startswith(".") and len(segment) <= 128
        key = validate_key(f"images/by-url/{segment}")
        store.put_bytes(key, b"x")
        assert store.get_bytes(key) == b"x", text
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written and all(p.resolve().is_relative_to(root.resolve()) for p in written)
    assert len(store.list("images/by-url/")) == len(set(KEY_TEXTS))
