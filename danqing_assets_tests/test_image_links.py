from collections import Counter

import pytest

from danqing_assets.curation.charset import decode_html
from danqing_assets.curation.image_links import (
    LinkLimits,
    extract_image_links,
    largest_srcset_candidate,
    pair_uid,
    resolve_image_url,
)
from danqing_assets_tests.realworld import NEWS_PAGES

PAGE = "https://news.example.cn/2024/03/story.html"


def links_of(html, page=PAGE, limits=LinkLimits()):
    drops = Counter()
    return extract_image_links(html, page, drops, limits), drops


def real(name):
    return decode_html((NEWS_PAGES / name).read_bytes()).text


def test_lazy_loaded_real_images_use_the_real_url_not_the_placeholder():
    links, _ = links_of(real("cjn_1.html"), "http://www.cjn.cn/")
    by_text = {link.alt_text: link.url for link in links}
    assert by_text["观影、逛展、看演出……文化活动扮靓双节“佳”期"] == "http://wenhua.cjn.cn/whxw/202010/W020201005049929722227.jpeg"
    assert not any("blank.png" in url for url in by_text.values())


def test_data_original_wins_on_the_163_list_page():
    links, drops = links_of(real("test_list_page_163_1.html"), "https://news.163.com/")
    by_text = {link.alt_text: link.url for link in links}
    assert by_text["在中国，读文科到底有多惨"].endswith("thumbnail=200y90")  # data-original, not the webp src
    assert drops["repeated_on_page"] > 0


def test_protocol_relative_urls_take_the_page_scheme():
    links, _ = links_of(real("sina_sina.html"), "https://finance.sina.com.cn/a.shtml")
    logo = [link for link in links if link.url.endswith("sina_logo.png")]
    assert logo and logo[0].url == "https://n.sinaimg.cn/finance/page/ent/images/sina_logo.png"


def test_data_uri_placeholders_and_alt_less_images_are_counted_not_paired():
    links, drops = links_of(real("toutiao_2.html"), "https://www.toutiao.com/a1/")
    assert drops["data_uri"] > 0 and drops["no_text"] > 0
    assert all(not link.url.startswith("data:") for link in links)


@pytest.mark.parametrize("name", sorted(p.name for p in NEWS_PAGES.glob("*.html")))
def test_every_real_news_page_yields_only_absolute_http_urls(name):
    links, drops = links_of(real(name), "https://site.example.cn/dir/page.html")
    assert all(link.url.startswith(("http://", "https://")) for link in links)
    assert all(link.alt_text and link.alt_text == link.alt_text.strip() for link in links)
    assert len(links) + sum(drops.values()) > 0


def test_relative_urls_and_base_href():
    html = """<html><head><base href="https://cdn.example.cn/assets/"></head><body>
      <img src="img/a.jpg" alt="相对路径的图片">
      <img src="../b.png" alt="上一级目录的图片">
      <img src="/c.webp#frag" alt="根目录的图片">
    </body></html>"""
    links, _ = links_of(html)
    assert [link.url for link in links] == [
        "https://cdn.example.cn/assets/img/a.jpg",
        "https://cdn.example.cn/b.png",
        "https://cdn.example.cn/c.webp",
    ]
    links, _ = links_of('<img src="img/a.jpg" alt="没有 base 的图片">')
    assert links[0].url == "https://news.example.cn/2024/03/img/a.jpg"


def test_figcaption_title_and_srcset_fallbacks():
    html = """
      <figure><a href="/x"><img src="/1.jpg"></a><figcaption>  西湖 边的 <b>春天</b> </figcaption></figure>
      <img src="/2.jpg" title="只有标题的图片">
      <img srcset="/s.jpg 320w, /l.jpg 1280w, /m.jpg 640w" alt="响应式图片">
      <img src="/4.jpg" alt="有替代文本" title="也有标题">
    """
    links, _ = links_of(html)
    got = [(link.url.rsplit("/", 1)[1], link.alt_text, link.text_source) for link in links]
    assert got == [
        ("1.jpg", "西湖 边的 春天", "figcaption"),
        ("2.jpg", "只有标题的图片", "title"),
        ("l.jpg", "响应式图片", "alt"),
        ("4.jpg", "有替代文本", "alt"),
    ]
    assert links[3].title == "也有标题"


@pytest.mark.parametrize(
    "src, reason",
    [
        ("javascript:alert(1)", "unsupported_scheme"),
        ("file:///etc/passwd", "unsupported_scheme"),
        ("ftp://example.cn/a.jpg", "unsupported_scheme"),
        ("data:image/png;base64,AAAA", "data_uri"),
        ("http://[::1/a.jpg", "invalid_url"),
        ("http://example.cn:99999999/a.jpg", "invalid_url"),
        ("http:///a.jpg", "invalid_url"),
        ("http://user:secret@example.cn/a.jpg", "url_with_credentials"),
        ("https://example.cn/" + "a" * 5000, "url_too_long"),
    ],
)
def test_hostile_urls_are_dropped_with_a_reason(src, reason):
    links, drops = links_of(f'<img src="{src}" alt="某张图片">')
    assert links == [] and drops == Counter({reason: 1})


def test_limits_on_images_and_text():
    html = "".join(f'<img src="/{i}.jpg" alt="第{i}张图片">' for i in range(30))
    links, drops = links_of(html, limits=LinkLimits(max_images=10))
    assert len(links) == 10 and drops["too_many_images_on_page"] == 20
    links, drops = links_of('<img src="/a.jpg" alt="' + "长" * 5000 + '">')
    assert links == [] and drops["text_too_long"] == 1


def test_srcset_and_uid():
    assert largest_srcset_candidate("a.jpg 1x, b.jpg 2x") == "b.jpg"
    assert largest_srcset_candidate("a.jpg") == "a.jpg"
    assert largest_srcset_candidate(" , ") is None
    assert pair_uid("http://a/1.jpg", "猫") == pair_uid("http://a/1.jpg", "猫") != pair_uid("http://a/1.jpg", "狗")
    assert len(pair_uid("u", "t")) == 32
    assert pair_uid("u", "\udcff") != pair_uid("u", "")  # lone surrogates from bad pages still hash


def test_resolve_drops_fragment_and_whitespace():
    assert resolve_image_url("https://a.cn/x/", " b.jpg#top \n") == ("https://a.cn/x/b.jpg", None)
