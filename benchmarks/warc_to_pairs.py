"""WARC → raw pairs throughput, beside its baselines, measured in the same run.

    .venv/bin/python benchmarks/warc_to_pairs.py [--files 4] [--copies 20] [--repeats 3] [--json out.json]

Input: the bundled sample crawl's WARC files and the real Common Crawl slice in
../shared/realworld, concatenated ``--copies`` times into one gzipped WARC (gzip
members concatenate into a valid file), written ``--files`` times to disk. Every
file is streamed from disk as the pipeline does (one WARC file at a time, its pairs
written as one parquet part), so memory does not grow with the number of files.
One process pinned to one core. Reports, per core:
- bare read of every record payload with FastWARC (the limit) and with warcio;
- our extraction (FastWARC, CLD2 language selection, charset, lexbor parsing, parquet part);
- the loop users write: warcio + BeautifulSoup over every HTML page (on the first file).
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from pathlib import Path
from urllib.parse import urljoin

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REALWORLD, PeakRSS, comparison, measure, pin_one_core, stage_result, target  # noqa: E402

from danqing_assets.curation.extract_pairs import ExtractionConfig, extract_pairs  # noqa: E402
from danqing_assets.sample_crawl import build_sample_mirror  # noqa: E402


def build_input(copies: int, files: int, workdir: Path) -> list[Path]:
    mirror = build_sample_mirror(workdir / "mirror")
    parts = [mirror.root / p for paths in mirror.warc_paths.values() for p in paths]
    real = REALWORLD / "resiliparse" / "warcfile.warc.gz"
    if real.exists():
        parts.append(real)
    blob = b"".join(p.read_bytes() for p in parts) * copies
    out = []
    for i in range(files):
        path = workdir / f"bench-{i:04d}.warc.gz"
        path.write_bytes(blob)
        out.append(path)
    return out


def bare_fastwarc(path: Path) -> int:
    from fastwarc.warc import ArchiveIterator

    with open(path, "rb") as f:
        return sum(len(r.reader.read()) for r in ArchiveIterator(f, parse_http=False))


def bare_warcio(path: Path) -> int:
    from warcio.archiveiterator import ArchiveIterator

    with open(path, "rb") as f:
        return sum(len(r.content_stream().read()) for r in ArchiveIterator(f))


def warcio_bs4_loop(path: Path) -> int:
    """What people write: every HTML response through BeautifulSoup, <img alt> collected."""
    from bs4 import BeautifulSoup
    from warcio.archiveiterator import ArchiveIterator

    pairs = 0
    with open(path, "rb") as f:
        for record in ArchiveIterator(f):
            if record.rec_type != "response" or "html" not in (record.http_headers.get_header("Content-Type") or ""):
                continue
            url = record.rec_headers.get_header("WARC-Target-URI")
            soup = BeautifulSoup(record.content_stream().read(), "html.parser")
            for img in soup.find_all("img"):
                if img.get("src") and img.get("alt"):
                    urljoin(url, img["src"])
                    pairs += 1
    return pairs


def ours(path: Path, out_dir: Path, reader: str = "fastwarc", languages: frozenset[str] = frozenset({"zho"})) -> int:
    """One WARC file → its pairs, written as a parquet part (what one raw_pairs shard step does per file)."""
    with open(path, "rb") as f:
        table, _ = extract_pairs(f, snapshot="CC-MAIN-2026-08", warc_path=path.name,
                                 config=ExtractionConfig(languages=languages, reader=reader))
    table.write_parquet(out_dir / f"{path.stem}.parquet")
    return table.height


def run(size: int = 4, *, copies: int = 20, repeats: int = 1, baseline_files: int = 1, **_: object) -> dict:
    """``size`` WARC files of ``copies`` × the base blob (~0.6 MB gzipped) each."""
    pin_one_core()
    logging.getLogger("bs4").setLevel(logging.ERROR)  # "Some characters could not be decoded" per gbk page
    with tempfile.TemporaryDirectory(prefix="danqing-warc-bench-") as tmp:
        workdir = Path(tmp)
        paths = build_input(copies, size, workdir)
        out_dir = workdir / "parts"
        out_dir.mkdir()
        mb_each = paths[0].stat().st_size / 1e6
        ours(paths[0], out_dir)  # imports, CLD2 and lexbor warm-up, untimed
        with PeakRSS() as peak:
            seconds, cpu, pairs = measure(lambda: sum(ours(p, out_dir) for p in paths), repeats)
        mb = mb_each * len(paths)
        rate = pairs / seconds
        # parquet size per pair on one copy of the base blob: repeated copies would compress away
        single = workdir / "single.warc.gz"
        single.write_bytes(paths[0].read_bytes()[: len(paths[0].read_bytes()) // copies])
        single_pairs = ours(single, out_dir)
        parquet_bytes_per_pair = (out_dir / "single.warc.parquet").stat().st_size / single_pairs if single_pairs else None
        sample = paths[: max(1, baseline_files)]
        sample_mb = mb_each * len(sample)
        sample_pairs_ours = sum(ours(p, out_dir) for p in sample)
        comps = []
        for name, fn in (("bare read: FastWARC (the limit)", bare_fastwarc), ("bare read: warcio", bare_warcio),
                         ("warcio + BeautifulSoup loop, every page", warcio_bs4_loop)):
            s, s_cpu, out = measure(lambda fn=fn: sum(fn(p) for p in sample), repeats)
            # Baselines on the same bytes: rates are compared per MB of gzipped WARC
            c = comparison(name, sample_pairs_ours, s, rate, mb=sample_mb)
            c["ratio"] = (mb / seconds) / (sample_mb / s)
            c["ratio_cpu"] = (mb / cpu) / (sample_mb / s_cpu)
            c["cpu_seconds"], c["mb_per_cpu_s"] = s_cpu, sample_mb / s_cpu
            c["items"], c["items_per_s"] = None, None
            c["output"] = out
            comps.append(c)
    ratio_limit, ratio_bs4 = comps[0]["ratio_cpu"], comps[2]["ratio_cpu"]
    return stage_result(
        "warc_to_pairs", unit="pairs", items=pairs, seconds=seconds, cpu_seconds=cpu, mb=mb, peak=peak,
        comparisons=comps,
        targets=[target("≥ 50% of the bare FastWARC read (MB per CPU-s)", ratio_limit, 0.5),
                 target("≥ 10× warcio + BeautifulSoup (MB per CPU-s)", ratio_bs4, 10.0)],
        details={"files": len(paths), "mb_per_file": mb_each, "copies_per_file": copies, "baseline_files": len(sample),
                 "reader": "fastwarc", "languages": ["zho"],
                 "parquet_bytes_per_pair": parquet_bytes_per_pair},
        notes=["ratios compare MB/s of gzipped WARC; the BS4 loop extracts from every HTML page, ours from zho pages"],
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--copies", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline-files", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    r = run(args.files, copies=args.copies, repeats=args.repeats, baseline_files=args.baseline_files)
    print(f"input: {r['mb']:.1f} MB gzipped WARC in {r['details']['files']} files, best of {args.repeats}, one core")
    print(f"{'case':<48} {'MB/s':>8} {'ours/x':>8}")
    print(f"{'raw_pairs (ours), FastWARC, zho pages':<48} {r['mb_per_s']:8.1f} {'':>8}   {r['items']:,} pairs, "
          f"{r['items_per_s']:,.0f} pairs/s, peak RSS {r['peak_rss_mb']:.0f} MB")
    for c in r["comparisons"]:
        print(f"{c['name']:<48} {c['mb_per_s']:8.1f} {c['ratio']:8.2f}")
    if args.json:
        args.json.write_text(json.dumps(r, indent=2))


if __name__ == "__main__":
    main()
