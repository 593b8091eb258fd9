"""Find the images of an HTML page and the text that goes with each.

For every ``<img>``: the URL (lazy-load attributes and ``srcset`` included,
resolved against the page URL and ``<base href>``) and its text: ``alt``, and
where there is one the ``<figcaption>`` of its ``<figure>`` and its ``title``.
Each image that yields no usable pair is counted under a reason.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit, urlunsplit

from selectolax.lexbor import LexborHTMLParser, LexborNode

# Attributes lazy-loading scripts keep the real image URL in, most specific first.
LAZY_ATTRIBUTES = (
    "data-original",
    "data-src",
    "data-lazy-src",
    "data-lazyload",
    "data-actualsrc",
    "data-echo",
    "data-url",
    "data-original-src",
    "file",  # Discuz! forums
)
SRCSET_ATTRIBUTES = ("srcset", "data-srcset")
_PLACEHOLDER = re.compile(r"(?:^|/)(?:blank|spacer|loading|lazy|placeholder|grey|gray|pixel|transparent)[^/]*\.(?:gif|png|svg)$", re.I)
_WHITESPACE = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class ImageLink:
    url: str
    alt_text: str  # the caption as found on the page (alt, else figcaption, else title)
    text_source: str  # alt | figcaption | title
    alt: str
    title: str
    figcaption: str


@dataclass(frozen=True, slots=True)
class LinkLimits:
    max_images: int = 1000
    max_text_chars: int = 2000
    max_url_chars: int = 2048


def pair_uid(url: str, text: str) -> str:
    """Stable id of an (image URL, text) pair: the same pair gets the same uid in every run and snapshot."""
    return hashlib.blake2b(f"{url}\x00{text}".encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def extract_image_links(
    html: str, page_url: str, drops: Counter[str], limits: LinkLimits = LinkLimits()
) -> list[ImageLink]:
    """All usable (image URL, text) pairs of one page; unusable ``<img>`` counted in ``drops``."""
    tree = LexborHTMLParser(html)
    base = _base_url(tree, page_url)
    links: list[ImageLink] = []
    seen: set[tuple[str, str]] = set()
    for index, img in enumerate(tree.css("img")):
        if index >= limits.max_images:
            drops["too_many_images_on_page"] += 1
            continue
        link = _link(img, base, drops, limits)
        if link is None:
            continue
        key = (link.url, link.alt_text)
        if key in seen:  # the same picture twice on a page (e.g. header and footer) is one pair
            drops["repeated_on_page"] += 1
            continue
        seen.add(key)
        links.append(link)
    return links


def _base_url(tree: LexborHTMLParser, page_url: str) -> str:
    node = tree.css_first("base[href]")
    href = (node.attributes.get("href") or "").strip() if node else ""
    if not href:
        return page_url
    try:
        resolved = urljoin(page_url, href)
    except ValueError:
        return page_url
    return resolved if urlsplit(resolved).scheme in ("http", "https") else page_url


def _link(img: LexborNode, base: str, drops: Counter[str], limits: LinkLimits) -> ImageLink | None:
    attrs = img.attributes
    raw = _pick_source(attrs)
    if raw is None:
        drops["no_image_url"] += 1
        return None
    if raw[:5].lower() == "data:":
        drops["data_uri"] += 1
        return None
    if len(raw) > limits.max_url_chars:
        drops["url_too_long"] += 1
        return None
    url, reason = resolve_image_url(base, raw)
    if reason:
        drops[reason] += 1
        return None
    alt, title = _clean(attrs.get("alt")), _clean(attrs.get("title"))
    figcaption = _figcaption(img)
    text, source = next(((t, s) for t, s in ((alt, "alt"), (figcaption, "figcaption"), (title, "title")) if t), ("", ""))
    if not text:
        drops["no_text"] += 1
        return None
    if len(text) > limits.max_text_chars:
        drops["text_too_long"] += 1
        return None
    return ImageLink(url, text, source, alt, title[: limits.max_text_chars], figcaption[: limits.max_text_chars])


def _pick_source(attrs: dict[str, str | None]) -> str | None:
    """The real image URL: a lazy-load attribute beats a placeholder ``src``; ``srcset`` is last."""
    src = (attrs.get("src") or "").strip()
    src_is_real = bool(src) and not src[:5].lower() == "data:" and not _PLACEHOLDER.search(src.split("?", 1)[0])
    for name in LAZY_ATTRIBUTES:
        value = (attrs.get(name) or "").strip()
        if value and value[:5].lower() != "data:" and not (src_is_real and name == "file"):
            return value
    if src_is_real:
        return src
    for name in SRCSET_ATTRIBUTES:
        best = largest_srcset_candidate(attrs.get(name) or "")
        if best:
            return best
    return src or None


def largest_srcset_candidate(srcset: str) -> str | None:
    """The widest (or densest) candidate of a ``srcset`` value."""
    best, best_size = None, -1.0
    for candidate in srcset.split(","):
        parts = candidate.split()
        if not parts:
            continue
        size = 1.0
        if len(parts) > 1 and parts[1][:-1].replace(".", "", 1).isdigit():
            size = float(parts[1][:-1]) * (1.0 if parts[1].endswith("w") else 10_000.0)
        if size > best_size:
            best, best_size = parts[0], size
    return best


def resolve_image_url(base: str, raw: str) -> tuple[str, str | None]:
    """Absolute http(s) URL for an ``src`` value, or ("", reason)."""
    raw = raw.strip().replace("\n", "").replace("\r", "").replace("\t", "")
    try:
        parts = urlsplit(urljoin(base, raw))
        if parts.scheme not in ("http", "https"):
            return "", "unsupported_scheme"
        if not parts.hostname:
            return "", "invalid_url"
        if parts.username is not None or parts.password is not None:
            # credentials must never reach storage, logs or the UI
            return "", "url_with_credentials"
        _ = parts.port  # raises on a non-numeric port
    except ValueError:
        return "", "invalid_url"
    # The fragment never reaches the server; dropping it makes equal images equal.
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", parts.query, "")), None


def _figcaption(img: LexborNode) -> str:
    node = img.parent
    for _ in range(4):  # <figure><a><picture><img> is as deep as real pages go
        if node is None:
            return ""
        if node.tag == "figure":
            caption = node.css_first("figcaption")
            return _clean(caption.text(deep=True, separator=" ")) if caption else ""
        node = node.parent
    return ""


def _clean(value: str | None) -> str:
    return _WHITESPACE.sub(" ", value).strip() if value else ""


def iter_page_pairs(links: list[ImageLink]) -> Iterator[tuple[str, ImageLink]]:
    for link in links:
        yield pair_uid(link.url, link.alt_text), link
