"""Paths of the real third-party samples in ../shared/realworld (test fixtures only)."""

from pathlib import Path

REALWORLD = Path(__file__).resolve().parents[1].parent / "shared" / "realworld"
if not REALWORLD.is_dir():  # a checkout elsewhere: the samples sit beside the repo in CI
    raise RuntimeError(f"real-world samples not found at {REALWORLD}")

CC_WARC = REALWORLD / "resiliparse" / "warcfile.warc.gz"
CLIPPED_WARC = REALWORLD / "resiliparse" / "clipped.warc.gz"
JAPANESE_WARC = REALWORLD / "resiliparse" / "clueweb-quirk.warc.gz"
SINGLE_RECORD_WARC = REALWORLD / "jwarc" / "cc.warc.gz"
WHIRLWIND_WARC = REALWORLD / "whirlwind-python" / "whirlwind.warc.gz"
PARQUET_LISTING = REALWORLD / "whirlwind-python" / "CC-MAIN-2024-22.warc.paths.gz"
COLLINFO = REALWORLD / "cc-collinfo" / "collinfo.json"
REAL_WARC_PATHS = REALWORLD / "cc-collinfo" / "CC-MAIN-2025-26.10warc.paths"
NEWS_PAGES = REALWORLD / "gne-zh-news"
