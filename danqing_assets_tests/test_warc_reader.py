import gzip
import io
from collections import Counter

import pytest
from selectolax.lexbor import LexborHTMLParser

from danqing_assets.curation.charset import decode_html
from danqing_assets.curation.extract_pairs import ExtractionConfig, extract_pairs, page_skip_reason
from danqing_assets.curation.warc_reader import PageRecord, SkippedRecord, iter_pages, parse_cld2_languages
from danqing_assets_tests.realworld import (
    CC_WARC,
    CLIPPED_WARC,
    JAPANESE_WARC,
    SINGLE_RECORD_WARC,
    WHIRLWIND_WARC,
)

READERS = ["fastwarc", "warcio"]


def pages(path_or_bytes, reader):
    data = path_or_bytes if isinstance(path_or_bytes, bytes) else path_or_bytes.read_bytes()
    return list(iter_pages(io.BytesIO(data), reader=reader))


@pytest.mark.parametrize("reader", READERS)
def test_real_cc_warc_pages_carry_their_cld2_languages(reader):
    items = pages(CC_WARC, reader)
    assert all(isinstance(i, PageRecord) for i in items)
    assert len(items) == 16
    chinese = [p for p in items if "zho" in p.languages]
    assert len(chinese) == 12
    first = items[0]
    assert first.url == "http://003338.cn/l41/481397.html"
    assert first.offset == 940 and first.fetch_date.startswith("2020-")
    assert first.languages == ("zho",)
    assert [p.languages for p in items if p.url.startswith("http://01spb.ru")] == [("rus",)]


def test_both_readers_give_identical_pages():
    for path in (CC_WARC, JAPANESE_WARC, SINGLE_RECORD_WARC, WHIRLWIND_WARC, CLIPPED_WARC):
        fast, reference = pages(path, "fastwarc"), pages(path, "warcio")
        key = lambda i: (type(i).__name__, i.url, i.offset, getattr(i, "body", None), getattr(i, "languages", None),  # noqa: E731
                         getattr(i, "reason", None))
        assert [key(i) for i in fast] == [key(i) for i in reference], path.name


@pytest.mark.parametrize("reader", READERS)
def test_a_truncated_record_is_flagged_not_silently_cut(reader):
    items = pages(CLIPPED_WARC, reader)
    assert [type(i) for i in items] == [SkippedRecord]
    assert items[0].reason == "truncated_record"


@pytest.mark.parametrize("reader", READERS)
def test_japanese_clueweb_quirks_are_read_without_language_tags(reader):
    items = pages(JAPANESE_WARC, reader)
    assert len(items) == 29 and all(isinstance(i, PageRecord) for i in items)
    assert all(i.languages is None for i in items)  # no CC metadata records: the selection can skip them
    assert all(b"\xa5" in i.body for i in items)  # the bogus Content-Encoding: gzip left the EUC-JP body intact


@pytest.mark.parametrize("reader", READERS)
def test_a_gzip_cut_in_the_middle_keeps_earlier_pages_and_reports_the_error(reader):
    data = CC_WARC.read_bytes()
    items = pages(data[: len(data) // 2], reader)
    good = [i for i in items if isinstance(i, PageRecord)]
    bad = [i for i in items if isinstance(i, SkippedRecord)]
    assert 3 <= len(good) < 16
    assert bad and bad[-1].reason in ("warc_read_error", "truncated_record")
    # every page handed on is complete: it equals the page from the intact file
    full = {p.offset: p.body for p in pages(CC_WARC, reader)}
    assert all(full[p.offset] == p.body for p in good)


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("garbage", [b"not a warc file at all\r\n" * 50, gzip.compress(b"\x00" * 5000), b""])
def test_garbage_is_an_error_with_a_reason_not_a_crash(reader, garbage):
    items = pages(garbage, reader)
    assert all(isinstance(i, SkippedRecord) and i.reason == "warc_read_error" for i in items)


def test_cld2_line_parsing():
    meta = b'fetchTimeMs: 1\r\nlanguages-cld2: {"reliable":true,"languages":[{"code":"zh-Hant","code-iso-639-3":"zho"},{"code":"en"}]}\r\n'
    assert parse_cld2_languages(meta) == ("zho", "en")
    assert parse_cld2_languages(b"fetchTimeMs: 1\r\n") is None
    assert parse_cld2_languages(b"languages-cld2: {broken\r\n") is None


@pytest.mark.parametrize("reader", READERS)
def test_extraction_selects_chinese_pages_and_counts_the_rest(reader):
    with CC_WARC.open("rb") as fh:
        table, stats = extract_pairs(fh, snapshot="CC-MAIN-2020-34", warc_path="w.warc.gz",
                                     config=ExtractionConfig(reader=reader))
    assert stats.pages_read == 16
    assert stats.pages_skipped["language_not_selected"] == 4
    assert stats.pages_parsed == 12
    assert table.height == stats.pairs > 0
    assert stats.images_seen == table.height + sum(stats.images_dropped.values())
    # ...and that is every <img> of the parsed pages, counted here on their own
    parsed = [p for p in pages(CC_WARC, reader) if page_skip_reason(p, frozenset({"zho"})) is None]
    assert len(parsed) == stats.pages_parsed
    assert stats.images_seen == sum(len(LexborHTMLParser(decode_html(p.body, p.content_type).text).tags("img")) for p in parsed)
    assert set(table["snapshot"]) == {"CC-MAIN-2020-34"} and set(table["warc_path"]) == {"w.warc.gz"}
    assert table["uid"].n_unique() == table.height
    assert all("zho" in langs for langs in table["page_languages"])


def test_japanese_pages_are_skipped_under_the_chinese_selection_and_parsed_without_it():
    with JAPANESE_WARC.open("rb") as fh:
        table, stats = extract_pairs(fh, snapshot="CC-MAIN-2012", warc_path="j", config=ExtractionConfig())
    assert table.height == 0 and stats.pages_skipped == Counter({"no_language_tag": 29})
    with JAPANESE_WARC.open("rb") as fh:
        table, stats = extract_pairs(fh, snapshot="CC-MAIN-2012", warc_path="j", config=ExtractionConfig(languages=frozenset()))
    assert stats.pages_parsed == 29 and table.height > 0
    assert set(table["page_charset"]) == {"euc_jp"}
    assert any("ヘッドポーター" in t for t in table["alt_text"])


def test_cld2_line_is_read_as_strict_json():
    # orjson reads it: NaN is not JSON (the json module let it through), so such a line is no tag
    assert parse_cld2_languages(b'languages-cld2: {"languages":[{"code":"zh"}],"score":NaN}\r\n') is None
    assert parse_cld2_languages(b'languages-cld2: {"languages":[{"code":"zh","name":"\xff"}]}') is None
    assert parse_cld2_languages(b'x: 1\rlanguages-cld2: {"languages":[{"code-iso-639-3":"zho"}]}\r') == ("zho",)
    assert parse_cld2_languages(b'languages-cld2:{"languages":[{"code-iso-639-3":null,"code":"zh"}]}') == ("zh",)
