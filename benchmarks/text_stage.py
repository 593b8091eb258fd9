"""Text stage throughput on real captions, beside bare jieba segmentation of the same captions.

    .venv/bin/python benchmarks/text_stage.py [--parts 4] [--part-size 50000] [--json out.json]

Captions: the human-written and machine-translated COCO-CN captions in
../shared/realworld plus junk alts of the kinds the filters exist for, cycled to
the requested count with distinct image URLs (so the duplicate filter sees the
real share of repeats only). They are made part by part and each part's output is
written as parquet, as ``text_filtered_pairs`` streams the snapshot's parts. One
process pinned to one core. Baseline: the Python ``jieba.lcut`` over the same
captions (the first ``--baseline-captions``). Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REALWORLD, Clock, PeakRSS, comparison, pin_one_core, stage_result, target  # noqa: E402

import polars as pl  # noqa: E402

from danqing_assets.curation.text.chain import TextStageConfig, TextStageReport, build_filters, run_text_stage  # noqa: E402

REAL = REALWORLD / "coco-cn"
JUNK = ["图片", "IMG_3886.jpg", "点击查看大图", "2026年5月28日", "http://example.cn/a.jpg", "某某新闻-图1", "logo",
        "A photographer carrying umbrellas in the park", "ブラウニー ブリーフケース", "哈哈哈哈哈哈哈", "风景", "【高清】🔥雨后的稻田边，情侣采摘灯笼！！！"]


def caption_pool() -> list[str]:
    human = [l.split("\t", 1)[1].strip() for l in (REAL / "coco-cn_ext.icap2020.txt").read_text().splitlines() if "\t" in l]
    machine = [l.strip() for l in (REAL / "coco-translated-sentences.machine-translated.txt").read_text().splitlines() if l.strip()]
    return human + machine + JUNK * 300


def captions(n: int, start: int = 0, pool: list[str] | None = None) -> list[str]:
    pool = pool or caption_pool()
    return [pool[i % len(pool)] for i in range(start, start + n)]


def part_frame(pool: list[str], start: int, n: int) -> pl.DataFrame:
    texts = captions(n, start, pool)
    return pl.DataFrame({"uid": [str(i) for i in range(start, start + n)],
                         "url": [f"http://img.example.cn/{i}.jpg" for i in range(start, start + n)],
                         "alt_text": texts, "page_url": ["http://news.example.cn/a.html"] * n})


def run(size: int = 4, *, part_size: int = 50_000, baseline_captions: int = 100_000, **_: object) -> dict:
    """``size`` parts of ``part_size`` captions each."""
    pin_one_core()
    pool = caption_pool()
    run_text_stage(part_frame(pool, 0, 100), build_filters(TextStageConfig()))  # dictionaries and tokenizer, untimed
    chain = build_filters(TextStageConfig())
    report = TextStageReport()
    total = size * part_size
    with tempfile.TemporaryDirectory(prefix="danqing-text-bench-") as tmp, PeakRSS() as peak, Clock() as clock:
        for index, offset in enumerate(range(0, total, part_size)):
            kept, rejected, part = run_text_stage(part_frame(pool, offset, part_size), chain)
            kept.write_parquet(Path(tmp) / f"kept-{index:05d}.parquet")
            rejected.write_parquet(Path(tmp) / f"rejected-{index:05d}.parquet")
            report.merge(part)
    seconds, cpu = clock.wall, clock.cpu
    rate = total / seconds

    import jieba  # the baseline: what segmentation alone costs with the Python jieba

    jieba.setLogLevel(60)
    jieba.initialize()
    sample = captions(min(total, baseline_captions), 0, pool)
    with Clock() as jieba_clock:
        for text in sample:
            jieba.lcut(text)
    jieba_s = jieba_clock.wall
    steps = sum(report.seconds.values())
    return stage_result(
        "text", unit="captions", items=total, seconds=seconds, cpu_seconds=cpu, peak=peak,
        comparisons=[comparison("bare jieba.lcut segmentation", len(sample), jieba_s, rate,
                                cpu_seconds=jieba_clock.cpu, ours_cpu_rate=total / cpu)],
        targets=[target("≥ 20,000 captions per CPU-second", total / cpu, 20_000)],
        details={"parts": size, "part_size": part_size, "filters": len(chain), "kept": report.rows_out,
                 "share_of_time": {k: v / steps for k, v in sorted(report.seconds.items(), key=lambda kv: -kv[1])},
                 "reasons": dict(report.reasons)},
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--parts", type=int, default=4)
    parser.add_argument("--part-size", type=int, default=50_000)
    parser.add_argument("--baseline-captions", type=int, default=100_000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    r = run(args.parts, part_size=args.part_size, baseline_captions=args.baseline_captions)
    base = r["comparisons"][0]
    print(f"{r['items']:,} captions in {args.parts} parts, one core")
    print(f"text stage (refine + {r['details']['filters']} filters): {r['items_per_s']:12,.0f} captions/s  "
          f"({r['seconds']:.1f} s, kept {r['details']['kept']:,}, peak RSS {r['peak_rss_mb']:.0f} MB)")
    print(f"bare jieba.lcut segmentation:       {base['items_per_s']:12,.0f} captions/s  ({base['seconds']:.1f} s)")
    print(f"ratio text stage / bare jieba:      {base['ratio']:12.2f}")
    print("share of time per step:")
    for name, share in r["details"]["share_of_time"].items():
        print(f"  {name:<24} {100 * share:5.1f} %")
    if args.json:
        args.json.write_text(json.dumps(r, indent=2))


if __name__ == "__main__":
    main()
