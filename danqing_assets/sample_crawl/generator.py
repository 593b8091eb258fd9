"""Build the bundled sample crawl: a miniature, deterministic Common Crawl mirror.

Layout under ``root`` (what the offline demo points ``cc_base_url`` at)::

    collinfo.json                              Common Crawl's crawl list, two sample crawls
    crawl-data/<id>/warc.paths.gz              one WARC path per line
    crawl-data/<id>/segments/<seg>/warc/*.warc.gz
    www/<host>/...                             the image hosts (robots.txt, images)
    SAMPLE-MANIFEST.json                       ground truth for tests and later stages

Every byte is a function of the seed: WARC dates, record ids, page text and
pixels all come from one ``random.Random(seed)``, and gzip headers carry no
timestamp. All text and images are generated here; nothing third-party ships.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import random
import shutil
import uuid
import zlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit

from danqing_assets.sample_crawl.images import IMAGE_KINDS, ImageSpec, render_image, small_jpeg
from danqing_assets.sample_crawl.pages import CLD2_LANGUAGES, DETECTED_CHARSET, PAGE_KINDS, ImgTag, Page
from danqing_assets.sample_crawl.plan import (
    PRIVATE_HOST,
    PRIVATE_PREFIX,
    SNAPSHOTS,
    TEXT_KINDS,
    OtherCapture,
    Planner,
    Snapshot,
    WarcPlan,
)
from danqing_assets.sample_crawl.warc import Capture, CommonCrawlWarcWriter
from danqing_assets.settings import get_settings

MANIFEST_NAME = "SAMPLE-MANIFEST.json"
_RENDER_THREADS = 3
_SERVERS = ("nginx", "Apache", "openresty", "Tengine", "nginx/1.24.0")


@dataclass(frozen=True)
class SampleMirror:
    """What :func:`build_sample_mirror` wrote; the counts are the manifest's summary."""

    root: Path
    snapshots: tuple[str, ...]
    warc_paths: dict[str, list[str]]
    hosts: tuple[str, ...]
    manifest_path: Path
    html_pages: dict[str, int]  # per snapshot
    img_tags: dict[str, int]  # per snapshot
    page_kinds: dict[str, int]  # HTML pages per page kind, whole mirror
    other_captures: dict[str, int]  # non-page captures per kind, whole mirror
    text_kinds: dict[str, int]  # <img> tags per text kind
    image_kinds: dict[str, int]  # <img> tags per image kind
    image_files: int
    total_bytes: int


def build_sample_mirror(root: Path, *, seed: int = 0, host_suffix: str | None = None) -> SampleMirror:
    """Write the sample mirror under ``root`` and describe it.

    ``host_suffix`` defaults to the ``sample_host_suffix`` setting, which the
    demo's HTTP server also uses to route hosts. A previous mirror in ``root``
    (recognised by its manifest) is replaced; nothing else there is removed.
    """
    root = Path(root)
    suffix = host_suffix or get_settings().sample_host_suffix
    _clear_previous_mirror(root)
    rng = random.Random(seed)
    planner = Planner(rng, suffix)
    plans = {snapshot.id: planner.plan_snapshot(snapshot) for snapshot in SNAPSHOTS}
    captures = [_write_warc(root, plan, rng) for plans_ in plans.values() for plan in plans_]
    image_entries = _write_images(root, planner.images)
    hosts = _hosts(plans, planner.images)
    _write_robots(root, hosts, suffix)
    _write_collinfo(root)
    warc_paths = _write_path_lists(root, plans)
    summary = _summary(plans)
    manifest = {
        "description": "Synthetic sample crawl made by danqing_assets.sample_crawl; all text and images are generated.",
        "seed": seed,
        "host_suffix": suffix,
        "snapshots": list(plans),
        "warc_paths": warc_paths,
        "hosts": list(hosts),
        "robots_disallow": {PRIVATE_HOST + suffix: [PRIVATE_PREFIX]},
        "kinds": {
            "page": {name: vars(kind) for name, kind in PAGE_KINDS.items()},
            "text": TEXT_KINDS,
            "image": IMAGE_KINDS,
        },
        "summary": summary,
        "captures": [entry for file_entries in captures for entry in file_entries],
        "images": image_entries,
    }
    manifest_path = root / MANIFEST_NAME
    manifest_path.write_text(json.dumps(manifest, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return SampleMirror(
        root=root,
        snapshots=tuple(plans),
        warc_paths=warc_paths,
        hosts=hosts,
        manifest_path=manifest_path,
        image_files=sum(1 for entry in image_entries.values() if entry["path"]),
        total_bytes=sum(p.stat().st_size for p in root.rglob("*") if p.is_file()),
        **summary,
    )


def _clear_previous_mirror(root: Path) -> None:
    if (root / MANIFEST_NAME).is_file():
        for sub in ("crawl-data", "www"):
            shutil.rmtree(root / sub, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)


# --- WARC files ------------------------------------------------------------------


def _write_warc(root: Path, plan: WarcPlan, rng: random.Random) -> list[dict]:
    """Write one WARC file; return the manifest entries of its captures."""
    path = root / plan.path
    path.parent.mkdir(parents=True, exist_ok=True)
    entries = []
    with path.open("wb") as stream:
        writer = CommonCrawlWarcWriter(stream, lambda: f"<urn:uuid:{uuid.UUID(int=rng.getrandbits(128), version=4)}>")
        writer.write_warcinfo(plan.filename, plan.start, _warcinfo_fields(plan.snapshot))
        for when, entry in plan.captures:
            capture = _page_capture(entry, when, rng) if isinstance(entry, Page) else _other_capture(entry, rng)
            writer.write_capture(capture)
            entries.append(_capture_entry(plan, entry, capture))
    return entries


def _warcinfo_fields(snapshot: Snapshot) -> dict[str, str]:
    return {
        "isPartOf": snapshot.id,
        "publisher": "danqing_assets sample crawl (synthetic)",
        "description": f"Synthetic sample crawl for the offline demo, {snapshot.name}",
        "operator": "danqing_assets",
        "hostname": "sample-generator",
        "software": "danqing_assets.sample_crawl",
        "robots": "all sample hosts allow crawling of pages",
        "format": "WARC File Format 1.1",
        "conformsTo": "http://iipc.github.io/warc-specifications/specifications/warc-format/warc-1.1/",
    }


def _page_capture(page: Page, when: datetime, rng: random.Random) -> Capture:
    body = page.encode()
    headers = _response_headers(when, page.content_type(), len(body), rng)
    metadata = (
        ("fetchTimeMs", str(rng.randrange(60, 2500))),
        ("charset-detected", DETECTED_CHARSET[page.spec.encoding]),
        ("languages-cld2", _cld2_json(page, rng)),
    )
    return Capture(page.url, _ip_for(page.url), when, "200 OK", headers, body, "text/html", metadata)


def _other_capture(other: OtherCapture, rng: random.Random) -> Capture:
    """Media, error and redirect captures: CC records them with a bare metadata record."""
    status, ctype, body, extra = {
        "image_jpeg": ("200 OK", "image/jpeg", small_jpeg(rng.getrandbits(32)), ()),
        "pdf": ("200 OK", "application/pdf", _tiny_pdf(), ()),
        "not_found_404": (
            "404 Not Found",
            "text/html; charset=utf-8",
            "<html><body><h1>404 页面不存在</h1></body></html>".encode(),
            (),
        ),
        "redirect_301": ("301 Moved Permanently", "text/html", b"", (("Location", other.url + ".html"),)),
    }[other.kind]
    headers = _response_headers(other.fetched, ctype, len(body), rng) + extra
    payload_type = ctype.split(";")[0]
    metadata = (("fetchTimeMs", str(rng.randrange(40, 900))),)
    return Capture(other.url, _ip_for(other.url), other.fetched, status, headers, body, payload_type, metadata)


def _response_headers(
    when: datetime, content_type: str, length: int, rng: random.Random
) -> tuple[tuple[str, str], ...]:
    """Headers as CC stores them: the transfer encoding undone and noted as X-Crawler-*."""
    served = when - timedelta(seconds=rng.randrange(0, 5))
    headers = [
        ("Date", format_datetime(served.replace(tzinfo=UTC), usegmt=True)),
        ("Server", rng.choice(_SERVERS)),
        ("Content-Type", content_type),
    ]
    if rng.random() < 0.6:
        headers += [("X-Crawler-Content-Encoding", "gzip"), ("Vary", "Accept-Encoding")]
    headers.append(("Content-Length", str(length)))
    return tuple(headers)


def _cld2_json(page: Page, rng: random.Random) -> str:
    """``languages-cld2`` exactly as CC writes it: compact JSON, 2-decimal coverage, float score."""
    iso, name = CLD2_LANGUAGES[page.spec.lang]
    main_cover = round(rng.uniform(0.9, 0.99), 2)
    languages = [
        {
            "code": page.spec.lang,
            "code-iso-639-3": iso,
            "text-covered": main_cover,
            "score": float(rng.randrange(900, 2100)),
            "name": name,
        }
    ]
    if page.spec.lang != "en" and rng.random() < 0.25:
        languages.append(
            {
                "code": "en",
                "code-iso-639-3": "eng",
                "text-covered": round(1 - main_cover - 0.01, 2),
                "score": float(rng.randrange(400, 1100)),
                "name": "ENGLISH",
            }
        )
    report = {"reliable": True, "text-bytes": page.text_bytes, "languages": languages}
    return json.dumps(report, separators=(",", ":"))


def _ip_for(url: str) -> str:
    """A stable documentation-range (TEST-NET) address per host."""
    host = urlsplit(url).hostname or ""
    value = zlib.crc32(host.encode())
    net = ("192.0.2", "198.51.100", "203.0.113")[value % 3]
    return f"{net}.{1 + value % 254}"


def _tiny_pdf() -> bytes:
    return (
        b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
        b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 200 200]>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
    )


def _capture_entry(plan: WarcPlan, entry: Page | OtherCapture, capture: Capture) -> dict:
    base = {
        "snapshot": plan.snapshot.id,
        "warc": plan.path,
        "url": capture.url,
        "status": int(capture.status[:3]),
        "content_type": dict(capture.response_headers)["Content-Type"],
    }
    if isinstance(entry, OtherCapture):
        return {**base, "kind": entry.kind}
    spec = entry.spec
    return {
        **base,
        "kind": entry.kind,
        "language": spec.lang,
        "encoding": spec.encoding,
        "declared_charset": spec.declared,
        "charset_location": list(spec.location),
        "html_lang": entry.html_lang,
        "base_href": entry.base_href,
        "title": entry.title,
        "images": [_tag_entry(tag) for tag in entry.images],
    }


def _tag_entry(tag: ImgTag) -> dict:
    return {
        "url": tag.url,
        "src": tag.src,
        "markup": tag.markup,
        "url_form": tag.url_form,
        "slot": tag.slot,
        "alt": tag.alt,
        "title": tag.title,
        "figcaption": tag.figcaption,
        "srcset": tag.srcset,
        "placeholder_src": tag.placeholder_src,
        "caption": tag.caption.text if tag.caption else None,
        "caption_words": tag.caption.words if tag.caption else None,
        "caption_source": tag.caption_source,
        "text_kind": tag.text_kind,
        "image_kind": tag.image_kind,
        "kind": tag.kind,
    }


# --- images, robots, crawl lists -------------------------------------------------------


def _write_images(root: Path, specs: dict[str, ImageSpec]) -> dict[str, dict]:
    """Write every image file; return the manifest's per-URL entries (404s included, path None)."""
    entries = {}
    # Pillow and numpy release the GIL while encoding and resizing, so threads help.
    with ThreadPoolExecutor(max_workers=_RENDER_THREADS) as pool:
        rendered = list(pool.map(render_image, specs.values()))
    for (url, spec), data in zip(specs.items(), rendered, strict=True):
        rel_path = None
        if data is not None:
            parts = urlsplit(url)
            rel_path = f"www/{parts.hostname}{unquote(parts.path)}"
            target = root / rel_path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        entries[url] = {
            "path": rel_path,
            "kind": spec.kind,
            "format": spec.fmt,
            "width": spec.size[0],
            "height": spec.size[1],
            "bytes": len(data) if data is not None else None,
            "sha256": hashlib.sha256(data).hexdigest() if data is not None else None,
            "duplicate_of": spec.duplicate_of,
        }
    return entries


def _hosts(plans: dict[str, list[WarcPlan]], images: dict[str, ImageSpec]) -> tuple[str, ...]:
    urls = [entry.url for plans_ in plans.values() for plan in plans_ for _, entry in plan.captures] + list(images)
    return tuple(sorted({urlsplit(url).hostname for url in urls if urlsplit(url).hostname}))


def _write_robots(root: Path, hosts: tuple[str, ...], suffix: str) -> None:
    for host in hosts:
        rules = f"Disallow: {PRIVATE_PREFIX}\n" if host == PRIVATE_HOST + suffix else "Allow: /\n"
        target = root / "www" / host / "robots.txt"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(f"User-agent: *\n{rules}", encoding="ascii")


def _write_collinfo(root: Path) -> None:
    """Common Crawl's collinfo.json format, newest crawl first."""
    crawls = [
        {
            "id": snapshot.id,
            "name": snapshot.name,
            "timegate": f"https://index.commoncrawl.org/{snapshot.id}/",
            "cdx-api": f"https://index.commoncrawl.org/{snapshot.id}-index",
            "from": f"{snapshot.start:%Y-%m-%dT%H:%M:%S}",
            "to": f"{snapshot.end:%Y-%m-%dT%H:%M:%S}",
        }
        for snapshot in sorted(SNAPSHOTS, key=lambda s: s.start, reverse=True)
    ]
    (root / "collinfo.json").write_text(json.dumps(crawls, indent=2) + "\n", encoding="utf-8")


def _write_path_lists(root: Path, plans: dict[str, list[WarcPlan]]) -> dict[str, list[str]]:
    """``warc.paths.gz`` per crawl; gzip with mtime 0 so rebuilds are byte-identical."""
    listed = {}
    for snapshot_id, plans_ in plans.items():
        paths = [plan.path for plan in plans_]
        target = root / "crawl-data" / snapshot_id / "warc.paths.gz"
        target.write_bytes(gzip.compress(("\n".join(paths) + "\n").encode("ascii"), mtime=0))
        listed[snapshot_id] = paths
    return listed


def _summary(plans: dict[str, list[WarcPlan]]) -> dict[str, dict[str, int]]:
    pages = {sid: [e for plan in ps for _, e in plan.captures if isinstance(e, Page)] for sid, ps in plans.items()}
    others = [e for ps in plans.values() for plan in ps for _, e in plan.captures if isinstance(e, OtherCapture)]
    tags = [tag for ps in pages.values() for page in ps for tag in page.images]
    return {
        "html_pages": {sid: len(ps) for sid, ps in pages.items()},
        "img_tags": {sid: sum(len(page.images) for page in ps) for sid, ps in pages.items()},
        "page_kinds": dict(sorted(Counter(page.kind for ps in pages.values() for page in ps).items())),
        "other_captures": dict(sorted(Counter(other.kind for other in others).items())),
        "text_kinds": dict(sorted(Counter(tag.text_kind for tag in tags).items())),
        "image_kinds": dict(sorted(Counter(tag.image_kind for tag in tags).items())),
    }
