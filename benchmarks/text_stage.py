"""Text stage throughput on real captions, beside bare jieba segmentation of the same captions.

    .venv/bin/python benchmarks/text_stage.py [--captions 200000] [--json out.json]

Captions: the human-written and machine-translated COCO-CN captions in
../shared/realworld plus junk alts of the kinds the filters exist for, cycled to
the requested count with distinct image URLs (so the duplicate filter sees the
real share of repeats only). One process, one core. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import polars as pl  # noqa: E402

from danqing_assets.curation.text.chain import TextStageConfig, TextStageReport, build_filters, run_text_stage  # noqa: E402

REAL = REPO.parent / "shared" / "realworld" / "coco-cn"
JUNK = ["图片", "IMG_3886.jpg", "点击查看大图", "2026年5月28日", "http://example.cn/a.jpg", "某某新闻-图1", "logo",
        "A photographer carrying umbrellas in the park", "ブラウニー ブリーフケース", "哈哈哈哈哈哈哈", "风景", "【高清】🔥雨后的稻田边，情侣采摘灯笼！！！"]


def captions(n: int) -> list[str]:
    human = [l.split("\t", 1)[1].strip() for l in (REAL / "coco-cn_ext.icap2020.txt").read_text().splitlines() if "\t" in l]
    machine = [l.strip() for l in (REAL / "coco-translated-sentences.machine-translated.txt").read_text().splitlines() if l.strip()]
    pool = human + machine + JUNK * 300
    return [pool[i % len(pool)] for i in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--captions", type=int, default=200_000)
    parser.add_argument("--part-size", type=int, default=50_000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    texts = captions(args.captions)
    frame = pl.DataFrame({"uid": [str(i) for i in range(len(texts))], "url": [f"http://img.example.cn/{i}.jpg" for i in range(len(texts))],
                          "alt_text": texts, "page_url": ["http://news.example.cn/a.html"] * len(texts)})
    chain = build_filters(TextStageConfig())
    run_text_stage(frame.head(100), build_filters(TextStageConfig()))  # load dictionaries and tokenizer once, untimed

    report = TextStageReport()
    started = time.perf_counter()
    for offset in range(0, frame.height, args.part_size):
        _, _, part = run_text_stage(frame.slice(offset, args.part_size), chain)
        report.merge(part)
    stage_s = time.perf_counter() - started

    import jieba  # the baseline: what segmentation alone costs with the Python jieba

    jieba.setLogLevel(60)
    jieba.initialize()
    started = time.perf_counter()
    for text in texts:
        jieba.lcut(text)
    jieba_s = time.perf_counter() - started

    rate, jieba_rate = len(texts) / stage_s, len(texts) / jieba_s
    print(f"{len(texts):,} captions, one core")
    print(f"text stage (refine + {len(chain)} filters): {rate:12,.0f} captions/s  ({stage_s:.1f} s, kept {report.rows_out:,})")
    print(f"bare jieba.lcut segmentation:       {jieba_rate:12,.0f} captions/s  ({jieba_s:.1f} s)")
    print(f"ratio text stage / bare jieba:      {rate / jieba_rate:12.2f}")
    print("share of time per step:")
    total = sum(report.seconds.values())
    for name, seconds in sorted(report.seconds.items(), key=lambda kv: -kv[1]):
        print(f"  {name:<24} {100 * seconds / total:5.1f} %  {seconds:6.2f} s")
    if args.json:
        args.json.write_text(json.dumps({"captions": len(texts), "captions_per_s": rate, "jieba_captions_per_s": jieba_rate,
                                         "seconds_per_step": dict(report.seconds), "reasons": dict(report.reasons)}, indent=2))


if __name__ == "__main__":
    main()
