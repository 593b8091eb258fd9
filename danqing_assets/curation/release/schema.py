"""The published metadata schema of a release, and how curated pairs map onto it."""

from __future__ import annotations

import numpy as np
import polars as pl

RELEASE_SCHEMA: dict[str, pl.DataType] = {
    "uid": pl.String,          # sha1 of (image URL, original caption): the sample's key in the tar shards
    "url": pl.String,          # image URL
    "alt_text": pl.String,     # the caption as found on the page
    "text": pl.String,         # the refined caption (what the filters judged and CLIP scored)
    "page_url": pl.String,     # the page the pair was found on
    "snapshot": pl.String,     # Common Crawl crawl id
    "warc_path": pl.String,    # WARC file of the page capture, relative to the crawl data root
    "warc_offset": pl.Int64,   # byte offset of the capture's record in that WARC
    "fetch_date": pl.String,   # when Common Crawl fetched the page
    "width": pl.Int32,         # released image (after the pipeline's resize)
    "height": pl.Int32,
    "orig_width": pl.Int32,    # the image as downloaded
    "orig_height": pl.Int32,
    "sha256": pl.String,       # of the image bytes as downloaded from url (the shards hold a re-encoded JPEG)
    "phash": pl.String,        # 64-bit perceptual hash, 16 hex digits (imagehash.phash)
    "clip_score": pl.Float32,  # raw Chinese-CLIP cosine of image and refined text
    "shard": pl.String,        # tar shard holding the sample, relative to the snapshot's release directory
}

IMAGE_EXT = "jpg"
JSON_FIELDS = ("uid", "url", "alt_text", "text", "page_url", "snapshot", "width", "height", "sha256", "phash", "clip_score")
"""Fields repeated in each sample's ``.json`` member, so a tar shard is usable on its own."""


def phash_hex(values: pl.Series) -> pl.Series:
    """pHashes stored as Int64 (the uint64 bit pattern) → 16 hex digits."""
    raw = values.fill_null(0).to_numpy().astype(np.int64).view(np.uint64)
    out = [f"{int(v):016x}" for v in raw]
    return pl.Series("phash", out, dtype=pl.String).zip_with(values.is_not_null(), pl.Series([None] * len(out), dtype=pl.String))


def release_frame(pairs: pl.DataFrame, keep: tuple[str, ...] = ()) -> pl.DataFrame:
    """Curated pairs (clip_filtered_pairs columns) → the published columns in the same row order (shard
    column empty), followed by the ``keep`` columns unchanged."""
    frame = pairs.with_columns(phash=phash_hex(pairs["phash"]), shard=pl.lit(""))
    return frame.select(*[pl.col(name).cast(dtype) for name, dtype in RELEASE_SCHEMA.items()], *keep)
