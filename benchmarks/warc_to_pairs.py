"""WARC → raw pairs throughput, beside its baselines, measured in the same run.

    .venv/bin/python benchmarks/warc_to_pairs.py [--copies 40] [--json out.json]

Input: the bundled sample crawl's WARC files and the real Common Crawl slice in
../shared/realworld, concatenated ``--copies`` times into one gzipped WARC (gzip
members concatenate into a valid file). Reports per single core:
- bare read of every record payload with FastWARC and with warcio (the limit);
- our extraction with each reader (language selection, charset, lexbor parsing);
- the loop users write: warcio + BeautifulSoup over every HTML page.
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urljoin

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from danqing_assets.curation.extract_pairs import ExtractionConfig, extract_pairs  # noqa: E402
from danqing_assets.sample_crawl import build_sample_mirror  # noqa: E402


def build_input(copies: int, workdir: Path) -> Path:
    mirror = build_sample_mirror(workdir / "mirror")
    parts = [mirror.root / p for paths in mirror.warc_paths.values() for p in paths]
    real = REPO.parent / "shared" / "realworld" / "resiliparse" / "warcfile.warc.gz"
    if real.exists():
        parts.append(real)
    blob = b"".join(p.read_bytes() for p in parts)
    out = workdir / "bench.warc.gz"
    out.write_bytes(blob * copies)
    return out


def bare_fastwarc(data: bytes) -> int:
    from fastwarc.warc import ArchiveIterator

    return sum(len(r.reader.read()) for r in ArchiveIterator(io.BytesIO(data), parse_http=False))


def bare_warcio(data: bytes) -> int:
    from warcio.archiveiterator import ArchiveIterator

    return sum(len(r.content_stream().read()) for r in ArchiveIterator(io.BytesIO(data)))


def warcio_bs4_loop(data: bytes) -> int:
    """What people write: every HTML response through BeautifulSoup, <img alt> collected."""
    from bs4 import BeautifulSoup
    from warcio.archiveiterator import ArchiveIterator

    pairs = 0
    for record in ArchiveIterator(io.BytesIO(data)):
        if record.rec_type != "response" or "html" not in (record.http_headers.get_header("Content-Type") or ""):
            continue
        url = record.rec_headers.get_header("WARC-Target-URI")
        soup = BeautifulSoup(record.content_stream().read(), "html.parser")
        for img in soup.find_all("img"):
            if img.get("src") and img.get("alt"):
                urljoin(url, img["src"])
                pairs += 1
    return pairs


def ours(reader: str, languages: frozenset[str]):
    def run(data: bytes) -> int:
        table, _ = extract_pairs(io.BytesIO(data), snapshot="CC-MAIN-2026-08", warc_path="bench",
                                 config=ExtractionConfig(languages=languages, reader=reader))
        return table.height
    return run


def timed(fn, data: bytes, repeats: int) -> tuple[float, int]:
    best, result = float("inf"), 0
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn(data)
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--copies", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory() as tmp:
        path = build_input(args.copies, Path(tmp))
        data = path.read_bytes()
    mb = len(data) / 1e6
    cases = [
        ("bare read: FastWARC (the limit)", bare_fastwarc),
        ("bare read: warcio", bare_warcio),
        ("raw_pairs, FastWARC, zho pages", ours("fastwarc", frozenset({"zho"}))),
        ("raw_pairs, warcio, zho pages", ours("warcio", frozenset({"zho"}))),
        ("raw_pairs, FastWARC, every page", ours("fastwarc", frozenset())),
        ("baseline: warcio + BeautifulSoup, every page", warcio_bs4_loop),
    ]
    results = {}
    for name, fn in cases:
        seconds, out = timed(fn, data, args.repeats)
        results[name] = {"seconds": seconds, "mb_per_s": mb / seconds, "output": out}
    limit = results[cases[0][0]]["seconds"]
    baseline = results[cases[-1][0]]["seconds"]
    print(f"input: {mb:.1f} MB gzipped WARC, best of {args.repeats}, one core")
    print(f"{'case':<48} {'MB/s':>8} {'x limit':>8} {'x bs4':>8} {'output':>10}")
    for name, r in results.items():
        r["ratio_to_limit"] = limit / r["seconds"]
        r["speedup_vs_bs4_loop"] = baseline / r["seconds"]
        print(f"{name:<48} {r['mb_per_s']:8.1f} {r['ratio_to_limit']:8.2f} {r['speedup_vs_bs4_loop']:8.1f} {r['output']:>10,}")
    if args.json:
        args.json.write_text(json.dumps({"input_mb": mb, "results": results}, indent=2))


if __name__ == "__main__":
    main()
