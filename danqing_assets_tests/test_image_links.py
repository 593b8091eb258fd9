import random
from collections import Counter

import pytest

from danqing_assets.curation.charset import decode_html
from danqing_assets.curation.image_links import (
    _PLAIN_REFERENCE,
    LinkLimits,
    _plain,
    _resolve_with_urllib,
    extract_image_links,
    is_plain_base,
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


# --- URL resolution: ada on the fast path, urllib semantics everywhere --------------------------------------
BASE = "https://news.example.cn/2024/03/story.html"


@pytest.mark.parametrize(
    "src, expected",
    [
        # WHATWG (ada, browsers) would rewrite each of these; we keep urllib's answer, as before.
        ("/图片.jpg", "https://news.example.cn/图片.jpg"),  # WHATWG: percent-encoded path
        ("/a b.jpg", "https://news.example.cn/a b.jpg"),  # WHATWG: %20
        ("http://例子.中国/a.jpg", "http://例子.中国/a.jpg"),  # IDNA host kept as written; WHATWG: xn--…
        ("HTTP://IMG.Example.CN/a.jpg", "http://IMG.Example.CN/a.jpg"),  # WHATWG: host lower-cased
        ("http://a.cn:80/x.jpg", "http://a.cn:80/x.jpg"),  # WHATWG: default port dropped
        ("http://a.cn:/x.jpg", "http://a.cn:/x.jpg"),  # WHATWG: empty port dropped
        ("http://0x7f.1/x.jpg", "http://0x7f.1/x.jpg"),  # WHATWG: 127.0.0.1 (the downloader normalises it)
        ("img\\a.jpg", "https://news.example.cn/2024/03/img\\a.jpg"),  # WHATWG: backslash is a slash
        ("http://a.cn/x/../y.jpg", "http://a.cn/x/../y.jpg"),  # WHATWG: dot segments of absolute URLs removed
        ("%2e%2e/y.jpg", "https://news.example.cn/2024/03/%2e%2e/y.jpg"),  # WHATWG: %2e%2e is ".."
        ("a//b.jpg", "https://news.example.cn/2024/03/a/b.jpg"),  # WHATWG keeps the empty segment
        ("/x.jpg?", "https://news.example.cn/x.jpg"),  # WHATWG keeps the empty query
        ("https:///a.jpg", "https://news.example.cn/a.jpg"),  # WHATWG: host "a.jpg"
        ("http://a.cn/x.jpg?q='1'", "http://a.cn/x.jpg?q='1'"),  # WHATWG: %27
        ("../../../img/./a.jpg#top", "https://news.example.cn/img/a.jpg"),
        ("http://xn--fiqs8s.cn/a.jpg", "http://xn--fiqs8s.cn/a.jpg"),
    ],
)
def test_urls_resolve_as_urllib_resolves_them_where_whatwg_differs(src, expected):
    assert resolve_image_url(BASE, src) == (expected, None)
    assert resolve_image_url(BASE, src) == _resolve_with_urllib(BASE, src)


def test_empty_credentials_are_still_credentials():
    # WHATWG drops an empty "user:@"; urllib sees a user name, and such a URL was never kept
    assert resolve_image_url(BASE, "http://:@img.example.cn/a.jpg") == ("", "url_with_credentials")
    assert resolve_image_url(BASE, "http://@img.example.cn/a.jpg") == ("", "url_with_credentials")


@pytest.mark.parametrize(
    "src, plain",
    [
        ("https://img.example.cn/a/b.jpg?w=1&h=2#x", True),
        ("//img.example.cn/a.jpg", True),
        ("/a/b.jpg", True),
        ("b.jpg", True),
        ("../../images/b.jpg", True),
        ("./W020201004753948187334.jpeg", True),
        ("//img.mix.sina.com.cn/resize?img=//n.sinaimg.cn/a.png", True),  # "//" in a query is left alone
        ("/图片.jpg", False),
        ("/a b.jpg", False),
        ("HTTP://a.cn/x.jpg", False),
        ("http://A.cn/x.jpg", False),
        ("http://a.cn:8080/x.jpg", False),
        ("http://u@a.cn/x.jpg", False),
        ("http://1.2.3/x.jpg", False),
        ("http://xn--fiqs8s/x.jpg", False),
        ("a\\b.jpg", False),
        ("a/../b.jpg", False),
        ("a/%2E%2E/b.jpg", False),
        ("a//b.jpg", False),
        ("b.jpg?", False),
        ("b.jpg;v=1", False),
        ("c:b.jpg", False),
    ],
)
def test_only_urls_both_libraries_read_alike_take_the_fast_path(src, plain):
    assert _plain(_PLAIN_REFERENCE.fullmatch(src)) is plain
    assert resolve_image_url(BASE, src) == _resolve_with_urllib(BASE, src)


def test_the_fast_path_agrees_with_urllib_on_generated_urls():
    rng = random.Random(8)
    hosts = ["a.cn", "img.example.cn", "a_b.cn", "-a.cn", "a.cn.", "1a.cn", "a.b1", "x.0x1",
             "A.cn", "1.2.3", "xn--a.cn", "a.cn:80"]  # fmt: skip
    alphabet = list("abz09-._~!$&()*+,=:@/?#%;'\\ ") + ["..", ".", "//", "%2e", "%20", "图", "xn--"]
    bases = [f"{scheme}://{host}{path}" for scheme in ("http", "https") for host in hosts[:8]
             for path in ("", "/", "/d/", "/d/p.html", "/d/p.html?q=1#f", "/a//b/p.html", "/x/../y/")]  # fmt: skip

    def reference() -> str:
        names = ["x", "a.jpg", "b", "img", "c-d_e~f.png"] * 4 + ["..", ".", "", "%2e"]
        segments = "/".join(rng.choice(names) for _ in range(rng.randint(1, 4)))
        host = rng.choice(hosts)
        head = rng.choice(["", "", "/", "./", "../", f"//{host}/", f"{rng.choice(['http', 'https'])}://{host}/"])
        tail = rng.choice(["", "", "?w=1", "?u=http://x/y", "?", "#f", "?#"])
        text = head + segments + tail
        if rng.random() < 0.3:
            at = rng.randint(0, len(text))
            text = text[:at] + rng.choice(alphabet) + text[at:]
        return text

    fast = 0
    for _ in range(4000):
        base, src = rng.choice(bases), reference()
        fast += is_plain_base(base) and _plain(_PLAIN_REFERENCE.fullmatch(src.strip()))
        assert resolve_image_url(base, src) == _resolve_with_urllib(base, src.strip()), (base, src)
    assert fast > 800  # the comparison exercised the fast path (1040 of 4000 with this seed), not only the fallback


# --- parsing shortcuts --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["cjn_1.html", "sina_sina.html", "test_list_page_163_1.html"])
def test_utf8_bytes_and_decoded_text_give_the_same_links(name):
    text = real(name)
    from_text, drops_text = links_of(text)
    from_bytes, drops_bytes = links_of(text.encode("utf-8"))
    assert from_text == from_bytes and drops_text == drops_bytes and from_text


def test_nested_figures_take_their_first_caption_in_document_order():
    html = """<figure><figure><img src="/1.jpg"><figcaption>里面的图注</figcaption></figure>
      <img src="/2.jpg"><figcaption>外面的图注</figcaption></figure>
      <figure><figcaption> 前面的 <b>图注</b> </figcaption><a><picture><img src="/3.jpg"></picture></a></figure>
      <figure><div><div><div><div><img src="/4.jpg"></div></div></div></div>
        <figcaption>太远的图注</figcaption></figure>"""
    links, drops = links_of(html)
    assert [(link.url.rsplit("/", 1)[1], link.alt_text) for link in links] == [
        ("1.jpg", "里面的图注"), ("2.jpg", "里面的图注"), ("3.jpg", "前面的 图注"),
    ]  # fmt: skip
    assert drops == Counter({"no_text": 1})  # a caption more than four levels up is not the image's


def test_upper_case_tags_image_tags_and_a_base_in_the_body_are_read():
    html = """<BODY><IMG SRC="a.jpg" ALT="大写的标签"><image src="b.jpg" alt="image 标签">
      <BASE HREF="https://cdn.example.cn/x/"><base href="https://ignored.example.cn/"></BODY>"""
    links, _ = links_of(html)
    assert [link.url for link in links] == ["https://cdn.example.cn/x/a.jpg", "https://cdn.example.cn/x/b.jpg"]
