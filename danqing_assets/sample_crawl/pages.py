"""HTML pages of the sample crawl: what kinds exist, and how one is rendered and encoded.

A page kind fixes the language, the bytes' real encoding and where (if
anywhere) the charset is declared; those are exactly the axes on which real
Chinese pages trip up extractors.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field

from danqing_assets.sample_crawl.vocab import Caption


@dataclass(frozen=True)
class PageKind:
    """``location`` lists where the charset is declared: header, meta_charset, meta_http_equiv."""

    lang: str  # the cld2 code Common Crawl would tag the page with
    encoding: str  # Python codec that produced the bytes
    declared: str | None  # charset label the page announces
    location: tuple[str, ...]


PAGE_KINDS: dict[str, PageKind] = {
    "hans_utf8": PageKind("zh", "utf-8", "utf-8", ("header", "meta_charset")),
    "hans_header_only": PageKind("zh", "utf-8", "utf-8", ("header",)),
    "hans_meta_charset_gbk": PageKind("zh", "gbk", "gbk", ("meta_charset",)),
    "hans_http_equiv_gb2312": PageKind("zh", "gb2312", "gb2312", ("meta_http_equiv",)),
    "hans_gb2312_needs_gb18030": PageKind("zh", "gb18030", "gb2312", ("header", "meta_http_equiv")),
    "hans_no_charset": PageKind("zh", "utf-8", None, ()),
    "hant_big5": PageKind("zh-Hant", "big5", "big5", ("meta_http_equiv",)),
    "hant_utf8": PageKind("zh-Hant", "utf-8", "utf-8", ("header",)),
    "ja_shift_jis": PageKind("ja", "shift_jis", "Shift_JIS", ("meta_http_equiv",)),
    "ja_euc_jp": PageKind("ja", "euc_jp", "EUC-JP", ("header",)),
    "en_utf8": PageKind("en", "utf-8", "utf-8", ("meta_charset",)),
}

# cld2's names for the languages above, as they appear in CC's languages-cld2 JSON.
CLD2_LANGUAGES: dict[str, tuple[str, str]] = {
    "zh": ("zho", "Chinese"),
    "zh-Hant": ("zho", "ChineseT"),
    "ja": ("jpn", "Japanese"),
    "en": ("eng", "ENGLISH"),
}
# What CC's charset detector reports for each encoding (it follows the declaration).
DETECTED_CHARSET = {
    "utf-8": "UTF-8",
    "gbk": "GBK",
    "gb2312": "GB2312",
    "gb18030": "GB2312",
    "big5": "Big5",
    "shift_jis": "Shift_JIS",
    "euc_jp": "EUC-JP",
}
_CHROME = {
    "zh": ("zh-CN", "首页", "新闻", "图片", "关于我们", "版权所有"),
    "zh-Hant": ("zh-TW", "首頁", "新聞", "圖片", "關於我們", "版權所有"),
    "ja": ("ja", "ホーム", "ニュース", "写真", "お問い合わせ", "著作権"),
    "en": ("en", "Home", "News", "Photos", "About", "All rights reserved"),
}


@dataclass
class ImgTag:
    """One ``<img>`` as written in a page, with its ground truth.

    ``url`` is what the markup resolves to (a ``data:`` URI stays as is);
    ``src`` is the string in the markup. ``caption`` is the good caption a
    careful extractor can recover (from ``caption_source``), if any.
    """

    url: str
    src: str
    url_form: str
    text_kind: str
    image_kind: str
    alt: str | None = None
    title: str | None = None
    figcaption: str | None = None
    caption: Caption | None = None
    caption_source: str | None = None
    markup: str = "src"
    placeholder_src: str | None = None
    srcset: str | None = None
    slot: str = "article"

    @property
    def kind(self) -> str:
        """The first reason to drop the pair, text before pixels; "good" if none."""
        return self.text_kind if self.text_kind != "good" else self.image_kind


@dataclass
class Page:
    url: str
    kind: str
    site: str
    title: str
    date_line: str
    paragraphs: list[str]
    html_lang: str | None = None  # overrides the language's usual lang attribute
    base_href: str | None = None
    images: list[ImgTag] = field(default_factory=list)

    @property
    def spec(self) -> PageKind:
        return PAGE_KINDS[self.kind]

    @property
    def text_bytes(self) -> int:
        """Roughly what cld2 would count: the visible text, in UTF-8."""
        return len((self.title + "".join(self.paragraphs)).encode("utf-8"))

    def content_type(self) -> str:
        if "header" in self.spec.location:
            return f"text/html; charset={self.spec.declared}"
        return "text/html"

    def encode(self) -> bytes:
        """The page as served; strict, so a word the codec can't hold fails the build."""
        return render_html(self).encode(self.spec.encoding)


def render_html(page: Page) -> str:
    lang_attr, home, news, photos, about, rights = _CHROME[page.spec.lang]
    header = [img for img in page.images if img.slot == "header"]
    article = [img for img in page.images if img.slot == "article"]
    footer = [img for img in page.images if img.slot == "footer"]
    lines = [
        "<!DOCTYPE html>",
        f'<html lang="{page.html_lang or lang_attr}">',
        "<head>",
        *_charset_meta(page),
        f"<title>{_esc(page.title)} - {_esc(page.site)}</title>",
        *([f'<base href="{_esc(page.base_href)}">'] if page.base_href else []),
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<link rel="stylesheet" href="/static/site.css">',
        "<style>.lazy{min-height:120px}.nav li{display:inline}</style>",
        "<script>var _hmt = _hmt || []; window.dataLayer = window.dataLayer || [];</script>",
        "</head>",
        "<body>",
        '<div class="header">',
        *(_img_html(img) for img in header),
        f'<ul class="nav"><li><a href="/">{home}</a></li><li><a href="/news/">{news}</a></li>'
        f'<li><a href="/photo/">{photos}</a></li><li><a href="/about.html">{about}</a></li></ul>',
        "</div>",
        "<!-- article start -->",
        '<div class="article">',
        f"<h1>{_esc(page.title)}</h1>",
        f'<p class="info">{_esc(page.date_line)}</p>',
        *_interleave(page.paragraphs, article),
        "</div>",
        '<div class="footer">',
        *(_img_html(img) for img in footer),
        f"<p>&copy; 2026 {_esc(page.site)} {rights}</p>",
        "</div>",
        "</body>",
        "</html>",
    ]
    return "\r\n".join(lines) + "\r\n"


def _charset_meta(page: Page) -> list[str]:
    spec = page.spec
    out = []
    if "meta_charset" in spec.location:
        out.append(f'<meta charset="{spec.declared}">')
    if "meta_http_equiv" in spec.location:
        out.append(f'<meta http-equiv="Content-Type" content="text/html; charset={spec.declared}">')
    return out


def _interleave(paragraphs: list[str], images: list[ImgTag]) -> list[str]:
    """Spread the images between the paragraphs, the way an article reads."""
    out: list[str] = []
    per_paragraph = -(-len(images) // max(1, len(paragraphs)))
    for i, text in enumerate(paragraphs):
        out.append(f"<p>{_esc(text)}</p>")
        out.extend(_img_html(img) for img in images[i * per_paragraph : (i + 1) * per_paragraph])
    return out


def _img_html(img: ImgTag) -> str:
    attrs: list[tuple[str, str]] = []
    if img.markup == "data-src":
        attrs += [("class", "lazy"), ("src", img.placeholder_src or ""), ("data-src", img.src)]
    elif img.markup == "data-original":
        attrs += [("class", "lazy"), ("src", img.placeholder_src or ""), ("data-original", img.src)]
    elif img.markup == "srcset":
        attrs.append(("srcset", img.srcset or ""))
    else:
        attrs.append(("src", img.src))
    if img.alt is not None:
        attrs.append(("alt", img.alt))
    if img.title is not None:
        attrs.append(("title", img.title))
    tag = "<img " + " ".join(f'{name}="{_esc(value)}"' for name, value in attrs) + ">"
    if img.markup == "figure":
        return f"<figure>{tag}<figcaption>{_esc(img.figcaption or '')}</figcaption></figure>"
    return tag


def _esc(text: str) -> str:
    return html.escape(text, quote=True)
