"""A tiny benchmark set built from a snapshot's own curated pairs, so the evaluation runs offline.

It is a SMOKE TEST: retrieval over pairs the pipeline itself kept, and a
zero-shot task whose class is each image's dominant colour (红色/绿色/蓝色).
The numbers show that loading, encoding and scoring work end to end; they say
nothing about the model or the data. Both sets are written in Chinese-CLIP's
format and read back through the same reader as real sets.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from .benchmark_sets import write_retrieval_set, write_zeroshot_set

SMOKE_WARNING = ("SMOKE TEST: a tiny benchmark set built from this snapshot's own curated pairs (retrieval) and their "
                 "dominant colours (zero-shot); it only shows that the evaluation runs and measures nothing. "
                 "Set DANQING_BENCHMARK_SETS_DIR to Flickr30K-CN, COCO-CN or MUGE in Chinese-CLIP's format.")
COLOUR_CLASSES = ("红色", "绿色", "蓝色")  # red, green, blue: the channel with the largest mean


def dominant_colour(data: bytes) -> int:
    with Image.open(io.BytesIO(data)) as image:
        small = image.convert("RGB").resize((32, 32))
    return int(np.asarray(small, dtype=np.float64).reshape(-1, 3).mean(axis=0).argmax())


def build_smoke_sets(root: Path, texts: Sequence[str], images: Sequence[bytes]) -> list[Path]:
    """``root/smoke-retrieval`` (split ``test``) and ``root/smoke-zeroshot`` from pairs (text i ↔ image i)."""
    if len(texts) != len(images):
        raise ValueError(f"{len(texts)} texts but {len(images)} images")
    if len(texts) < 2:
        raise ValueError("a smoke set needs at least two pairs")
    retrieval = write_retrieval_set(Path(root) / "smoke-retrieval", "test",
                                    [(i, t, [i]) for i, t in enumerate(texts)], list(enumerate(images)))
    zeroshot = write_zeroshot_set(Path(root) / "smoke-zeroshot", COLOUR_CLASSES,
                                  [(dominant_colour(data), f"{i:05d}.jpg", data) for i, data in enumerate(images)])
    return [retrieval, zeroshot]
