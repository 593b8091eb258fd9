import gzip
import json

import pytest

from danqing_assets.curation.crawl_ids import (
    InvalidCrawlId,
    InvalidWarcPaths,
    crawl_year,
    parse_warc_paths,
    validate_crawl_id,
    warc_paths_key,
)
from danqing_assets_tests.realworld import COLLINFO, PARQUET_LISTING, REAL_WARC_PATHS


def test_every_id_of_the_real_crawl_list_is_valid():
    ids = [c["id"] for c in json.loads(COLLINFO.read_text())]
    assert len(ids) == 118
    assert [validate_crawl_id(i) for i in ids] == ids
    # the irregular early ids are among them
    assert {"CC-MAIN-2012", "CC-MAIN-2009-2010", "CC-MAIN-2008-2009"} <= set(ids)


@pytest.mark.parametrize(
    "bad",
    ["", "CC-MAIN-2024-1", "CC-MAIN-2024-54", "CC-MAIN-2024-00", "cc-main-2024-10", "CC-MAIN-2024-10 ",
     "CC-MAIN-2024-10,CC-MAIN-2024-18", "CC-MAIN-2009-2011", "CC-NEWS-2024-10", "../CC-MAIN-2024-10", "CC-MAIN-1999-10"],
)
def test_malformed_ids_are_rejected_with_a_clear_error(bad):
    with pytest.raises(InvalidCrawlId, match="CC-MAIN"):
        validate_crawl_id(bad)


def test_year_and_paths_key():
    assert crawl_year("CC-MAIN-2009-2010") == 2009
    assert crawl_year("CC-MAIN-2024-10") == 2024
    assert warc_paths_key("CC-MAIN-2024-10") == "crawl-data/CC-MAIN-2024-10/warc.paths.gz"


def test_real_warc_paths_parse_plain_and_gzipped():
    raw = REAL_WARC_PATHS.read_bytes()
    for data in (raw, gzip.compress(raw)):
        paths = parse_warc_paths(data, "CC-MAIN-2025-26")
        assert len(paths) == 10
        assert all(p.startswith("crawl-data/CC-MAIN-2025-26/segments/") and p.endswith(".warc.gz") for p in paths)


def test_a_file_named_warc_paths_that_lists_parquet_is_rejected():
    with pytest.raises(InvalidWarcPaths, match="not a WARC file"):
        parse_warc_paths(PARQUET_LISTING.read_bytes(), "CC-MAIN-2024-22")


def test_paths_of_another_crawl_or_with_traversal_are_rejected():
    raw = REAL_WARC_PATHS.read_bytes()
    with pytest.raises(InvalidWarcPaths):
        parse_warc_paths(raw, "CC-MAIN-2024-10")
    evil = b"crawl-data/CC-MAIN-2025-26/segments/../../../etc/warc/x.warc.gz\n"
    with pytest.raises(InvalidWarcPaths):
        parse_warc_paths(evil, "CC-MAIN-2025-26")
    with pytest.raises(InvalidWarcPaths, match="no files"):
        parse_warc_paths(b"\n\n", "CC-MAIN-2025-26")
