import io

import pytest

from danqing_assets.curation.charset import decode_html, meta_charset, normalize_charset
from danqing_assets.curation.warc_reader import iter_pages
from danqing_assets_tests.realworld import CC_WARC, NEWS_PAGES


def real_pages():
    return {p.url: p for p in iter_pages(io.BytesIO(CC_WARC.read_bytes()))}


def test_real_page_declaring_gb2312_that_needs_gb18030_decodes_cleanly():
    page = real_pages()["http://096355.com/video/11073.html?11073-0-2"]
    assert meta_charset(page.body).lower() == "gb2312"
    with pytest.raises(UnicodeDecodeError):
        page.body.decode("gb2312")
    decoded = decode_html(page.body, page.content_type)
    assert (decoded.charset, decoded.source, decoded.replaced) == ("gb18030", "meta", False)
    assert "<title>正在播放_" in decoded.text


def test_header_charset_wins_over_meta_and_detection():
    pages = real_pages()
    gbk = pages["http://0760.jxtdw.com/area/sanxiang/"]
    decoded = decode_html(gbk.body, gbk.content_type)
    assert (decoded.charset, decoded.source) == ("gb18030", "http_header")
    russian = pages["http://01spb.ru/company/"]
    assert decode_html(russian.body, russian.content_type).charset == "cp1251"


def test_every_real_cc_page_decodes_without_replacement():
    for page in real_pages().values():
        assert not decode_html(page.body, page.content_type).replaced, page.url


def test_pages_without_charset_are_detected():
    text = "<html><body><p>" + "中文网页的标题和内容，没有声明字符集。" * 20 + "</p></body></html>"
    for encoding, expected in (("gb18030", "gb18030"), ("utf-8", "utf-8")):
        decoded = decode_html(text.encode(encoding))
        assert decoded.source in ("detected", "fallback")
        assert decoded.text == text, encoding
        assert decoded.charset == expected


def test_a_wrong_declaration_falls_back_to_a_charset_that_works():
    body = '<meta charset="utf-8"><p>繁體中文的頁面內容，編碼其實是大五碼。</p>'.encode("big5")
    decoded = decode_html(body, "text/html; charset=utf-8")
    assert decoded.charset == "big5hkscs" and "繁體中文的頁面內容" in decoded.text


def test_bogus_labels_and_utf16_declarations_are_ignored():
    assert normalize_charset("no-such-charset") is None
    assert normalize_charset("utf-16") is None
    assert normalize_charset("GB2312") == normalize_charset("gbk") == normalize_charset("x-gbk") == "gb18030"
    assert normalize_charset("big5") == "big5hkscs"
    assert normalize_charset("ISO-8859-1") == "cp1252"
    body = "<meta charset='utf-16'><p>简体中文</p>".encode()
    assert decode_html(body).text.endswith("简体中文</p>")


def test_utf8_bom_wins():
    decoded = decode_html("<p>简体</p>".encode("utf-8-sig"), "text/html; charset=gbk")
    assert (decoded.source, decoded.text) == ("bom", "<p>简体</p>")


def test_a_stray_bad_byte_keeps_the_declared_charset_and_is_flagged():
    body = ("<p>" + "简体中文的正文。" * 2000 + "</p>").encode("utf-8")
    body = body[:3000] + b"\xff" + body[3000:]
    decoded = decode_html(body, "text/html; charset=utf-8")
    assert (decoded.charset, decoded.source, decoded.replaced) == ("utf-8", "http_header", True)
    assert decoded.text.count("\ufffd") == 1 and decoded.text.endswith("简体中文的正文。</p>")


def test_many_bad_bytes_mean_the_declaration_is_wrong():
    body = ("<p>" + "简体中文的正文。" * 200 + "</p>").encode("gb18030")
    decoded = decode_html(body, "text/html; charset=utf-8")
    assert decoded.charset == "gb18030" and not decoded.replaced


def test_news_pages_without_a_charset_decode():
    for path in sorted(NEWS_PAGES.glob("*.html")):
        decoded = decode_html(path.read_bytes())
        assert not decoded.replaced, path.name
        assert "<" in decoded.text
