"""Real captions and alts from ../shared/realworld for the text-stage tests."""

from collections import Counter

import polars as pl

from danqing_assets.curation.charset import decode_html
from danqing_assets.curation.extract_pairs import ExtractionConfig, extract_pairs
from danqing_assets.curation.image_links import extract_image_links
from danqing_assets_tests.realworld import JAPANESE_WARC, NEWS_PAGES, REALWORLD

COCO_HUMAN = REALWORLD / "coco-cn" / "coco-cn_ext.icap2020.txt"
COCO_MACHINE = REALWORLD / "coco-cn" / "coco-translated-sentences.machine-translated.txt"


def coco_human_captions() -> list[str]:
    return [line.split("\t", 1)[1].strip() for line in COCO_HUMAN.read_text().splitlines() if "\t" in line]


def coco_machine_captions() -> list[str]:
    return [line.strip() for line in COCO_MACHINE.read_text().splitlines() if line.strip()]


def pairs_frame(alts: list[str], urls: list[str] | None = None, page_url: str = "http://news.example.cn/a.html") -> pl.DataFrame:
    """A raw_pairs-shaped frame for the given alt texts."""
    urls = urls or [f"http://img.example.cn/{i}.jpg" for i in range(len(alts))]
    return pl.DataFrame(
        {"uid": [str(i) for i in range(len(alts))], "url": urls, "alt_text": alts, "page_url": [page_url] * len(alts)}
    )


def japanese_warc_alts() -> list[str]:
    with JAPANESE_WARC.open("rb") as fh:
        table, _ = extract_pairs(fh, snapshot="CC-MAIN-2012", warc_path="j", config=ExtractionConfig(languages=frozenset()))
    return table["alt_text"].to_list()


def news_page_alts(name: str) -> list[str]:
    html = decode_html((NEWS_PAGES / name).read_bytes()).text
    return [link.alt_text for link in extract_image_links(html, "https://news.example.cn/a/b.html", Counter())]


