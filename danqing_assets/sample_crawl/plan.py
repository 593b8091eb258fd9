"""Decide what the sample crawl contains: pages, their images and every flaw.

The planner draws everything from one seeded RNG in a fixed order, so a seed
always yields the same plan. Each snapshot gets a fixed quota of "special"
images (noisy alts, broken files, duplicates, ...) spread round-robin over its
Simplified Chinese pages; the remaining slots hold good image–caption pairs.
"""

from __future__ import annotations

import base64
import posixpath
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from urllib.parse import urljoin, urlsplit

from danqing_assets.sample_crawl.images import EXTENSIONS, ImageSpec, placeholder_gif, small_png
from danqing_assets.sample_crawl.pages import PAGE_KINDS, ImgTag, Page
from danqing_assets.sample_crawl.vocab import (
    EN_SITE_NAME,
    GB18030_ONLY_CAPTION,
    HANS_SITE_NAMES,
    HANT_SITE_NAME,
    JA_SITE_NAME,
    Caption,
    TextMaker,
)

# What a downstream stage is expected to do with an image of each text kind.
TEXT_KINDS: dict[str, str] = {
    "good": "keep: a good caption is in caption_source (alt, title or figcaption)",
    "emoji_noise": "clean: strip the decoration; caption holds the clean text",
    "boilerplate": "drop: UI or site-chrome text",
    "filename": "drop: a file name",
    "url": "drop: a URL",
    "numeric": "drop: a number or a date",
    "title_index": "drop: page title plus an image index",
    "short": "drop: fewer than 5 words",
    "keyword_stuffing": "drop: more than 60 words of keywords",
    "empty_alt": 'drop: alt=""',
    "missing_alt": "drop: no alt attribute",
    "foreign": "drop: not Chinese",
}
OTHER_CAPTURE_KINDS = ("image_jpeg", "pdf", "not_found_404", "redirect_301")


@dataclass(frozen=True)
class Snapshot:
    id: str
    name: str
    start: datetime
    end: datetime


SNAPSHOTS = (
    Snapshot(
        "CC-MAIN-2026-08", "February 2026 Index", datetime(2026, 2, 6, 11, 20, 31), datetime(2026, 2, 19, 8, 47, 12)
    ),
    Snapshot("CC-MAIN-2026-17", "April 2026 Index", datetime(2026, 4, 10, 9, 2, 44), datetime(2026, 4, 23, 15, 30, 5)),
)
WARC_FILES_PER_SNAPSHOT = 3
HANS_HOSTS = ("news", "blog", "shop", "bbs", "travel")
IMAGE_HOSTS = ("img", "cdn", "pic")
PRIVATE_HOST, PRIVATE_PREFIX = "cdn", "/private/"  # robots.txt of this host disallows the prefix
_PAGE_PATHS = {
    "news": "/2026/{mmdd}/c{n}.html",
    "blog": "/post/{n}.html",
    "shop": "/item/{n}.html",
    "bbs": "/thread-{n}-1-1.html",
    "travel": "/guide/city{k}/{n}.html",
    "tw": "/news/{n}.html",
    "jp": "/blog/entry-{n}.html",
    "en": "/story/{n}.html",
}
_SPECIAL_PAGE_KINDS = tuple(kind for kind in PAGE_KINDS if kind != "hans_utf8")
# Per snapshot: how many images of each special kind; (text or image kind) -> count.
_TEXT_QUOTA = {
    "boilerplate": 6,
    "filename": 5,
    "url": 3,
    "numeric": 5,
    "title_index": 3,
    "emoji_noise": 5,
    "short": 4,
    "keyword_stuffing": 2,
    "empty_alt": 6,
    "missing_alt": 5,
    "foreign": 3,
    "title_only": 4,
    "figcaption_only": 4,
    "captcha": 2,
}
_IMAGE_QUOTA = {
    "tiny": 3,
    "extreme_aspect": 3,
    "blurred": 4,
    "blank": 3,
    "text_heavy": 4,
    "cmyk": 2,
    "palette_alpha": 2,
    "broken_truncated": 2,
    "broken_random": 2,
    "not_an_image": 1,
    "missing_404": 4,
    "robots_disallowed": 3,
    "data_uri": 3,
}
_NEAR_DUPLICATE_PAIRS, _EXACT_DUPLICATE_PAIRS = 4, 3
_REPEATED_IMAGES, _REPEATS = 2, 3  # same URL and caption on several pages of one snapshot
_SHARED_IMAGES = 8  # same URL and caption in both snapshots

_FIXED_SIZES = {"tiny": (16, 16), "extreme_aspect": (1200, 100), "huge": (6000, 4000), "palette_alpha": (300, 300)}
_FIXED_FORMATS = {
    "cmyk": "jpeg",
    "blurred": "jpeg",
    "huge": "jpeg",
    "palette_alpha": "png",
    "text_heavy": "jpeg",
    "broken_truncated": "jpeg",
    "broken_random": "jpeg",
    "not_an_image": "jpeg",
    "missing_404": "jpeg",
}
_PLACEHOLDER_URI = "data:image/gif;base64," + base64.b64encode(placeholder_gif()).decode("ascii")

TagMaker = Callable[[Page], list[ImgTag]]


@dataclass(frozen=True)
class OtherCapture:
    """A capture that is not an HTML page with images: media, a 404, a redirect."""

    kind: str
    url: str
    fetched: datetime


@dataclass
class WarcPlan:
    snapshot: Snapshot
    index: int
    start: datetime
    captures: list[tuple[datetime, Page | OtherCapture]] = field(default_factory=list)

    @property
    def filename(self) -> str:
        end = self.start + timedelta(hours=3)
        return f"CC-MAIN-{self.start:%Y%m%d%H%M%S}-{end:%Y%m%d%H%M%S}-{self.index:05d}.warc.gz"

    @property
    def segment(self) -> str:
        """A millisecond timestamp plus a two-digit suffix, like CC's; two files share a segment."""
        group = self.index // 2
        millis = int((self.snapshot.start - datetime(1970, 1, 1)).total_seconds() * 1000) + 1111 + group * 7_200_000
        return f"{millis}.{17 + 9 * group:02d}"

    @property
    def path(self) -> str:
        return f"crawl-data/{self.snapshot.id}/segments/{self.segment}/warc/{self.filename}"


class Planner:
    """Plans both snapshots; ``images`` collects every image file by URL."""

    def __init__(self, rng: random.Random, host_suffix: str) -> None:
        self.rng = rng
        self.text = TextMaker(rng)
        self.suffix = host_suffix
        self.images: dict[str, ImageSpec] = {}
        self._page_number = 1000
        self._shared = [self._new_fixed_image("good", "img", "/gallery/") for _ in range(_SHARED_IMAGES)]
        self._shared_captions = [self.text.hans_caption() for _ in self._shared]
        self._huge = self._new_fixed_image("huge", "pic", "/wallpaper/")

    def host(self, label: str) -> str:
        return label + self.suffix

    # --- snapshots and files -----------------------------------------------------
    def plan_snapshot(self, snapshot: Snapshot) -> list[WarcPlan]:
        files = [self._plan_file(snapshot, i) for i in range(WARC_FILES_PER_SNAPSHOT)]
        pages = [entry for plan in files for _, entry in plan.captures if isinstance(entry, Page)]
        self._fill_images(pages)
        return files

    def _plan_file(self, snapshot: Snapshot, index: int) -> WarcPlan:
        start = snapshot.start + timedelta(hours=29 * index, minutes=self.rng.randrange(60))
        plan = WarcPlan(snapshot, index, start)
        n_pages = self.rng.randint(20, 25)
        kinds: list[str] = [*_SPECIAL_PAGE_KINDS, *["hans_utf8"] * (n_pages - len(_SPECIAL_PAGE_KINDS))]
        entries: list[str] = kinds + list(_other_kinds_for_file(index))
        self.rng.shuffle(entries)
        times = sorted(start + timedelta(seconds=self.rng.randrange(3 * 3600)) for _ in entries)
        for when, kind in zip(times, entries, strict=True):
            entry = self._new_other(kind, when) if kind in OTHER_CAPTURE_KINDS else self._new_page(kind, when)
            plan.captures.append((when, entry))
        return plan

    def _new_other(self, kind: str, when: datetime) -> OtherCapture:
        n = self._next_number()
        urls = {
            "image_jpeg": f"http://{self.host('img')}/photos/{n}.jpg",
            "pdf": f"http://{self.host('news')}/files/report-{n}.pdf",
            "not_found_404": f"http://{self.host('blog')}/post/{n}.html",
            "redirect_301": f"http://{self.host('shop')}/item/{n}",
        }
        return OtherCapture(kind, urls[kind], when)

    # --- pages -------------------------------------------------------------------
    def _new_page(self, kind: str, when: datetime) -> Page:
        lang = PAGE_KINDS[kind].lang
        label = {"zh-Hant": "tw", "ja": "jp", "en": "en"}.get(lang) or self.rng.choice(HANS_HOSTS)
        n = self._next_number()
        published = when - timedelta(days=self.rng.randrange(1, 30))
        path = _PAGE_PATHS[label].format(n=n, mmdd=f"{published:%m%d}", k=n % 7)
        url = f"http://{self.host(label)}{path}"
        title, site, date_line, paragraphs = self._page_text(lang, label, published)
        page = Page(url, kind, site, title, date_line, paragraphs)
        if lang == "zh" and self.rng.random() < 0.1:
            page.html_lang = "en"  # real Chinese pages that mislabel themselves
        if lang == "zh" and self.rng.random() < 0.2:
            page.base_href = f"http://{self.host('cdn')}/{label}/assets/"
        if kind == "hans_gb2312_needs_gb18030":
            page.paragraphs.insert(0, GB18030_ONLY_CAPTION[0] + "。")
        return page

    def _page_text(self, lang: str, label: str, published: datetime) -> tuple[str, str, str, list[str]]:
        sentences = [self.rng.randint(2, 4) for _ in range(self.rng.randint(2, 4))]
        if lang == "zh":
            return (
                self.text.hans_title().text,
                HANS_SITE_NAMES[label],
                f"{published:%Y-%m-%d %H:%M} 来源：{HANS_SITE_NAMES[label]}",
                [self.text.hans_paragraph(n) for n in sentences],
            )
        if lang == "zh-Hant":
            return (
                self.text.hant_title(),
                HANT_SITE_NAME,
                f"發布時間：{published:%Y/%m/%d}",
                [self.text.hant_paragraph(n) for n in sentences],
            )
        if lang == "ja":
            return (
                self.text.ja_caption().text,
                JA_SITE_NAME,
                f"{published:%Y年%m月%d日}",
                [self.text.ja_paragraph(n) for n in sentences],
            )
        return (
            self.text.en_caption().text,
            EN_SITE_NAME,
            f"Published {published:%Y-%m-%d}",
            [self.text.en_paragraph(n) for n in sentences],
        )

    def _next_number(self) -> int:
        self._page_number += self.rng.randint(1, 9)
        return self._page_number

    # --- images on pages -----------------------------------------------------------
    def _fill_images(self, pages: list[Page]) -> None:
        """Deal the snapshot's special images onto Simplified pages, then top every page up."""
        hans = [p for p in pages if p.spec.lang == "zh"]
        assigned = self._deal(self._special_makers(), hans)
        for page in pages:
            tags = [tag for make in assigned.get(page.url, []) for tag in make(page)]
            if page.kind == "hans_gb2312_needs_gb18030":
                tags.append(self._good_tag(page, Caption(*GB18030_ONLY_CAPTION)))
            target = self.rng.randint(3, 8)
            while len(tags) < target - 2:
                tags.append(self._good_tag(page))
            chrome = self._chrome(page, target - len(tags))
            while len(tags) + len(chrome) < target:
                tags.append(self._good_tag(page))
            self.rng.shuffle(tags)
            page.images = chrome + tags

    def _deal(self, makers: list[tuple[bool, TagMaker]], hans: list[Page]) -> dict[str, list[TagMaker]]:
        """Round-robin over shuffled pages; makers needing UTF-8 only go to UTF-8 pages."""
        order = hans[:]
        self.rng.shuffle(order)
        utf8 = [p for p in order if p.spec.encoding == "utf-8"]
        assigned: dict[str, list[TagMaker]] = {}
        counters = {False: 0, True: 0}
        for needs_utf8, make in makers:
            pool = utf8 if needs_utf8 else order
            page = pool[counters[needs_utf8] % len(pool)]
            counters[needs_utf8] += 1
            assigned.setdefault(page.url, []).append(make)
        return assigned

    def _chrome(self, page: Page, room: int) -> list[ImgTag]:
        """Site logo in the header and a QR code in the footer, when the page has room."""
        out = []
        if room >= 1 and self.rng.random() < 0.4:
            # Root-relative, so a <base href> moves the logo to the base's host, as browsers do.
            url = self._site_image(urljoin(page.base_href or page.url, "/static/logo.png"), "logo", (180, 60))
            alt = self.rng.choice(["logo", f"{page.site}logo", page.site])
            out.append(ImgTag(url, "/static/logo.png", "root_relative", "boilerplate", "logo", alt=alt, slot="header"))
        if room >= 2 and self.rng.random() < 0.3:
            url = self._site_image(f"http://{urlsplit(page.url).netloc}/static/qrcode.png", "qr_code", (150, 150))
            alt = self.rng.choice(["二维码", "扫码关注"]) if page.spec.lang == "zh" else "QR"
            out.append(ImgTag(url, url, "absolute", "boilerplate", "qr_code", alt=alt, slot="footer"))
        return out

    def _site_image(self, url: str, kind: str, size: tuple[int, int]) -> str:
        self.images.setdefault(url, ImageSpec(url, kind, "png", size, self._seed()))
        return url

    # --- special images ------------------------------------------------------------
    def _special_makers(self) -> list[tuple[bool, TagMaker]]:
        makers: list[tuple[bool, TagMaker]] = []
        for kind, count in _TEXT_QUOTA.items():
            makers += [(kind == "emoji_noise", self._text_special(kind)) for _ in range(count)]
        for kind, count in _IMAGE_QUOTA.items():
            makers += [(False, self._image_special(kind)) for _ in range(count)]
        makers += [(False, make) for make in self._duplicate_makers()]
        makers += [
            (False, self._fixed_tag(spec, caption))
            for spec, caption in zip(self._shared, self._shared_captions, strict=True)
        ]
        makers.append((False, self._fixed_tag(self._huge, self.text.hans_caption())))
        self.rng.shuffle(makers)
        return makers

    def _duplicate_makers(self) -> list[TagMaker]:
        makers: list[TagMaker] = []
        for _ in range(_NEAR_DUPLICATE_PAIRS):
            original = self._new_fixed_image("good", "img", "/uploads/")
            makers.append(self._fixed_tag(original, self.text.hans_caption()))
            makers.append(self._fixed_tag(self._near_duplicate(original), self.text.hans_caption()))
        for _ in range(_EXACT_DUPLICATE_PAIRS):
            original = self._new_fixed_image("good", "img", "/uploads/")
            copy_url = f"http://{self.host('pic')}/mirror/{self.rng.getrandbits(48):012x}.{EXTENSIONS[original.fmt]}"
            copy = self._register(replace(original, url=copy_url, kind="exact_duplicate", duplicate_of=original.url))
            makers.append(self._fixed_tag(original, self.text.hans_caption()))
            makers.append(self._fixed_tag(copy, self.text.hans_caption()))
        for _ in range(_REPEATED_IMAGES):
            make = self._fixed_tag(self._new_fixed_image("good", "img", "/hot/"), self.text.hans_caption())
            makers += [make] * _REPEATS
        return makers

    def _near_duplicate(self, original: ImageSpec) -> ImageSpec:
        """The same drawing, resized and re-encoded (sometimes as WebP) on another host."""
        scale = self.rng.uniform(0.6, 0.85)
        size = (int(original.size[0] * scale), int(original.size[1] * scale))
        fmt = self.rng.choice(["jpeg", "webp"])
        url = f"http://{self.host('cdn')}/thumb/{self.rng.getrandbits(48):012x}.{EXTENSIONS[fmt]}"
        return self._register(
            ImageSpec(
                url, "near_duplicate", fmt, size, original.seed, original.size, self.rng.randrange(55, 75), original.url
            )
        )

    def _fixed_tag(self, spec: ImageSpec, caption: Caption) -> TagMaker:
        """A tag for an image whose URL is fixed in advance (shared across pages)."""

        def make(page: Page) -> list[ImgTag]:
            form, src = ("absolute", spec.url) if self.rng.random() < 0.7 else ("protocol_relative", spec.url[5:])
            return [_captioned(spec.url, src, form, spec.kind, caption)]

        return make

    def _image_special(self, kind: str) -> TagMaker:
        def make(page: Page) -> list[ImgTag]:
            caption = self.text.hans_caption()
            if kind == "data_uri":
                uri = "data:image/png;base64," + base64.b64encode(small_png(self._seed())).decode("ascii")
                return [_captioned(uri, uri, "data_uri", kind, caption)]
            if kind == "robots_disallowed":
                spec = self._new_fixed_image(kind, PRIVATE_HOST, PRIVATE_PREFIX)
                return [_captioned(spec.url, spec.url, "absolute", kind, caption)]
            return [self._good_tag(page, caption, image_kind=kind)]

        return make

    def _text_special(self, kind: str) -> TagMaker:
        def make(page: Page) -> list[ImgTag]:
            if kind == "title_index":
                return [self._with_text(self._good_tag(page), "title_index", f"{page.title}-图{i}") for i in (1, 2)]
            if kind == "captcha":
                url = self._site_image(
                    f"http://{self.host('bbs')}/static/captcha/{self._next_number()}.png", "captcha", (120, 40)
                )
                return [ImgTag(url, url, "absolute", "boilerplate", "captcha", alt="看不清？换一换", slot="footer")]
            tag = self._good_tag(page, markup="figure" if kind == "figcaption_only" else "src")
            return [self._apply_text_special(tag, kind)]

        return make

    def _apply_text_special(self, tag: ImgTag, kind: str) -> ImgTag:
        caption = tag.caption
        assert caption is not None
        if kind == "title_only":
            return replace(tag, alt=None, title=caption.text, caption_source="title")
        if kind == "figcaption_only":
            return replace(tag, alt="", figcaption=caption.text, caption_source="figcaption")
        if kind == "emoji_noise":
            return replace(tag, alt=self.text.emoji_wrap(caption).text, text_kind="emoji_noise")
        alts: dict[str, Callable[[], str | None]] = {
            "boilerplate": self.text.boilerplate_alt,
            "filename": self.text.filename_alt,
            "url": lambda: tag.url,
            "numeric": self.text.numeric_alt,
            "short": lambda: self.text.hans_short().text,
            "keyword_stuffing": lambda: self.text.hans_stuffing().text,
            "empty_alt": lambda: "",
            "missing_alt": lambda: None,
            "foreign": lambda: self.text.en_caption().text,
        }
        return self._with_text(tag, kind, alts[kind]())

    @staticmethod
    def _with_text(tag: ImgTag, text_kind: str, alt: str | None) -> ImgTag:
        """Replace every caption-bearing attribute, so the noisy alt is all the tag says."""
        markup = "src" if tag.markup == "figure" else tag.markup
        return replace(
            tag,
            alt=alt,
            title=None,
            figcaption=None,
            markup=markup,
            caption=None,
            caption_source=None,
            text_kind=text_kind,
        )

    # --- good images ---------------------------------------------------------------
    def _good_tag(
        self, page: Page, caption: Caption | None = None, *, image_kind: str = "good", markup: str | None = None
    ) -> ImgTag:
        """A fresh image at a fresh URL, written in one of the markups real pages use."""
        caption, text_kind = self._caption_for(page) if caption is None else (caption, "good")
        fmt = _FIXED_FORMATS.get(image_kind) or self.rng.choice(["jpeg"] * 7 + ["png", "webp", "gif"])
        url, src, form = self._place(page, EXTENSIONS[fmt])
        self._register(
            ImageSpec(
                url,
                image_kind,
                fmt,
                _FIXED_SIZES.get(image_kind) or self._photo_size(image_kind),
                self._seed(),
                quality=self.rng.randrange(70, 93),
            )
        )
        good = text_kind == "good"
        tag = ImgTag(
            url,
            src,
            form,
            text_kind,
            image_kind,
            alt=caption.text,
            caption=caption if good else None,
            caption_source="alt" if good else None,
        )
        return self._dress(page, tag, markup or self._pick_markup())

    def _caption_for(self, page: Page) -> tuple[Caption, str]:
        lang = page.spec.lang
        if lang == "zh":
            return self.text.hans_caption(), "good"
        if lang == "zh-Hant":
            return self.text.hant_caption(), "good"
        return (self.text.ja_caption() if lang == "ja" else self.text.en_caption()), "foreign"

    def _photo_size(self, image_kind: str) -> tuple[int, int]:
        if image_kind == "text_heavy":
            return (400, 560)
        width = self.rng.randrange(320, 560)
        return width, int(width * self.rng.uniform(0.65, 1.4))

    def _pick_markup(self) -> str:
        return self.rng.choices(["src", "data-src", "data-original", "srcset", "figure"], [50, 12, 10, 10, 18])[0]

    def _dress(self, page: Page, tag: ImgTag, markup: str) -> ImgTag:
        """Apply a markup: lazy-load placeholders, srcset candidates, figure, title."""
        tag = replace(tag, markup=markup)
        if markup == "data-src":
            tag.placeholder_src = _PLACEHOLDER_URI
        elif markup == "data-original":
            tag.placeholder_src = "/static/blank.gif"
            blank = urljoin(page.base_href or page.url, tag.placeholder_src)
            self.images.setdefault(blank, ImageSpec(blank, "placeholder", "gif", (1, 1), 0))
        elif markup == "srcset":
            tag.srcset = self._srcset(tag)
        elif markup == "figure":
            tag.figcaption = tag.alt
        if tag.alt and markup != "figure" and self.rng.random() < 0.15:
            tag.title = tag.alt
        return tag

    def _srcset(self, tag: ImgTag) -> str:
        """Two width candidates; the small one is a stored, resized copy of the large."""
        large = self.images[tag.url]
        small_size = (large.size[0] // 2, large.size[1] // 2)
        stem, ext = posixpath.splitext(tag.src)
        small_src = f"{stem}_small{ext}"
        stem_url, _ = posixpath.splitext(tag.url)
        self._register(
            replace(
                large,
                url=f"{stem_url}_small{ext}",
                kind="srcset_variant",
                size=small_size,
                base_size=large.size,
                duplicate_of=large.url,
            )
        )
        return f"{small_src} {small_size[0]}w, {tag.src} {large.size[0]}w"

    def _place(self, page: Page, ext: str) -> tuple[str, str, str]:
        """Pick how the page writes the image URL; return (resolved URL, src, form)."""
        base = page.base_href or page.url
        parts = urlsplit(base)
        base_dir = posixpath.dirname(parts.path) + "/"
        name = f"{self.rng.getrandbits(48):012x}.{ext}"
        forms = ["absolute", "protocol_relative", "root_relative", "relative"] + (
            ["parent_relative"] if base_dir != "/" else []
        )
        form = self.rng.choices(forms, [40, 15, 20, 15, 10][: len(forms)])[0]
        if form == "absolute":
            host = self.rng.choice([*map(self.host, IMAGE_HOSTS), parts.netloc])
            url = src = f"http://{host}/uploads/2026/{name}"
        elif form == "protocol_relative":
            url = f"http://{self.host('cdn')}/uploads/2026/{name}"
            src = url[5:]
        else:
            src = {
                "root_relative": f"/uploads/{name}",
                "relative": f"img/{name}",
                "parent_relative": f"../images/{name}",
            }[form]
            url = urljoin(base, src)
        return url, src, form

    # --- image registry --------------------------------------------------------------
    def _new_fixed_image(self, kind: str, label: str, prefix: str) -> ImageSpec:
        fmt = _FIXED_FORMATS.get(kind, "jpeg")
        url = f"http://{self.host(label)}{prefix}{self.rng.getrandbits(48):012x}.{EXTENSIONS[fmt]}"
        size = _FIXED_SIZES.get(kind) or self._photo_size(kind)
        return self._register(ImageSpec(url, kind, fmt, size, self._seed(), quality=self.rng.randrange(70, 93)))

    def _register(self, spec: ImageSpec) -> ImageSpec:
        return self.images.setdefault(spec.url, spec)

    def _seed(self) -> int:
        return self.rng.getrandbits(32)


def _captioned(url: str, src: str, form: str, image_kind: str, caption: Caption) -> ImgTag:
    """A tag whose alt is a good caption."""
    return ImgTag(url, src, form, "good", image_kind, alt=caption.text, caption=caption, caption_source="alt")


def _other_kinds_for_file(index: int) -> tuple[str, ...]:
    """Spread the non-page captures so every snapshot has each kind and exactly one 404."""
    return (("image_jpeg", "not_found_404"), ("pdf", "redirect_301"), ("image_jpeg", "pdf"))[index % 3]
