"""The paper's dataset analysis of a curated snapshot, as numbers (the asset draws them).

- caption length in jieba words (paper: mean 22, mostly 6–40);
- image resolution as the short side of the original image (paper: mostly 300–500 px);
- the image–text score distribution;
- semantic balance: k-means on the image embeddings, cluster sizes sorted (paper: 10K clusters);
- text quality: the share of nouns, verbs and adjectives among jieba's POS tags.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import rjieba

from ..text.tokens import word_count

# k-means needs several points per centroid for sizes to mean anything; small snapshots get fewer clusters
MIN_POINTS_PER_CLUSTER = 10
# jieba tag prefixes: n (n, nr, ns, nt, nz, ng), v (v, vd, vn, vg), a (a, ad, an, ag); x is punctuation
POS_CLASSES = {"noun": "n", "verb": "v", "adjective": "a"}


@dataclass(frozen=True)
class Histogram:
    labels: list[str]
    counts: list[int]

    def as_dict(self) -> dict:
        return {"labels": self.labels, "counts": self.counts}


def binned(values: np.ndarray, lo: float, hi: float, width: float, fmt: str = "{:g}") -> Histogram:
    """Counts in bins of ``width`` from ``lo``; values below ``lo`` or above ``hi`` go to the edge bins."""
    n = int(round((hi - lo) / width)) + 1
    index = np.clip(np.floor((np.asarray(values, dtype=np.float64) - lo) / width), 0, n - 1).astype(int)
    return Histogram([fmt.format(lo + i * width) for i in range(n)], np.bincount(index, minlength=n).tolist())


def caption_lengths(texts: Sequence[str]) -> np.ndarray:
    return np.array([word_count(t) for t in texts], dtype=np.int64)


def pos_shares(texts: Sequence[str]) -> dict[str, float]:
    """Share (0–1) of words tagged noun / verb / adjective among all words (punctuation and spaces excluded)."""
    counts = dict.fromkeys(POS_CLASSES, 0)
    words = 0
    for text in texts:
        for token, tag in rjieba.tag(text):
            if tag == "x" or not token.strip():
                continue
            words += 1
            for name, prefix in POS_CLASSES.items():
                counts[name] += tag.startswith(prefix)
    return {name: (counts[name] / words if words else 0.0) for name in POS_CLASSES} | {"words": words}


def kmeans_cluster_sizes(vectors: np.ndarray, clusters: int, seed: int = 0, niter: int = 20) -> np.ndarray:
    """Sizes of the k-means clusters of L2-normalised vectors (spherical k-means), largest first.

    ``clusters`` is capped so that each cluster has :data:`MIN_POINTS_PER_CLUSTER` points on average.
    """
    import faiss

    n = vectors.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    k = max(1, min(clusters, n // MIN_POINTS_PER_CLUSTER))
    if k == 1:
        return np.array([n], dtype=np.int64)
    data = np.ascontiguousarray(vectors, dtype=np.float32)
    kmeans = faiss.Kmeans(data.shape[1], k, niter=niter, seed=seed, spherical=True, verbose=False,
                          min_points_per_centroid=1)
    kmeans.train(data)
    _, assignment = kmeans.index.search(data, 1)
    return np.sort(np.bincount(assignment.ravel(), minlength=k))[::-1].astype(np.int64)


def balance_stats(sizes: np.ndarray) -> dict[str, float]:
    """How evenly the pairs spread over the clusters: normalised entropy is 1 for equal sizes, 0 for one cluster."""
    k, total = int(sizes.size), int(sizes.sum())
    if total == 0:
        return {"clusters": k, "largest": 0, "smallest": 0, "median": 0.0, "empty": k, "normalised_entropy": 0.0,
                "largest_decile_share": 0.0}
    p = sizes[sizes > 0] / total
    entropy = float(-(p * np.log(p)).sum())
    top = max(1, math.ceil(k / 10))
    return {"clusters": k, "largest": int(sizes.max()), "smallest": int(sizes.min()), "median": float(np.median(sizes)),
            "empty": int((sizes == 0).sum()), "normalised_entropy": entropy / math.log(k) if k > 1 else 0.0,
            "largest_decile_share": float(np.sort(sizes)[::-1][:top].sum() / total)}


def summary(values: np.ndarray) -> dict[str, float]:
    if values.size == 0:
        return {"mean": 0.0, "median": 0.0, "p5": 0.0, "p95": 0.0}
    p5, median, p95 = np.percentile(values, [5, 50, 95])
    return {"mean": float(values.mean()), "median": float(median), "p5": float(p5), "p95": float(p95)}


@dataclass
class DatasetAnalysis:
    pairs: int
    caption_words: np.ndarray
    short_side: np.ndarray
    scaled_score: np.ndarray
    cluster_sizes: np.ndarray
    pos: dict[str, float]

    def histograms(self) -> dict[str, Histogram]:
        return {
            "caption_words": binned(self.caption_words, 0, 60, 1, "{:.0f}"),
            "short_side_px": binned(self.short_side, 0, 1000, 50, "{:.0f}"),
            "scaled_score": binned(self.scaled_score, 0.0, 2.0, 0.05, "{:.2f}"),
        }

    def key_numbers(self) -> dict[str, float]:
        """The figures a person compares across snapshots (flat, for a table and for metadata)."""
        words, side = self.caption_words, self.short_side
        balance = balance_stats(self.cluster_sizes)
        return {
            "pairs": self.pairs,
            "caption_words_mean": summary(words)["mean"],
            "caption_words_median": summary(words)["median"],
            "caption_share_6_to_40_words": float(((words >= 6) & (words <= 40)).mean()) if words.size else 0.0,
            "short_side_median_px": summary(side)["median"],
            "short_side_share_300_to_500_px": float(((side >= 300) & (side <= 500)).mean()) if side.size else 0.0,
            "scaled_score_median": summary(self.scaled_score)["median"],
            "noun_share": self.pos["noun"],
            "verb_share": self.pos["verb"],
            "adjective_share": self.pos["adjective"],
            "kmeans_clusters": balance["clusters"],
            "cluster_balance_entropy": balance["normalised_entropy"],
            "largest_decile_share": balance["largest_decile_share"],
        }


def analyse(texts: Sequence[str], width: np.ndarray, height: np.ndarray, scaled_score: np.ndarray,
            image_embeddings: np.ndarray, clusters: int, seed: int = 0) -> DatasetAnalysis:
    return DatasetAnalysis(
        pairs=len(texts),
        caption_words=caption_lengths(texts),
        short_side=np.minimum(np.asarray(width), np.asarray(height)).astype(np.int64),
        scaled_score=np.asarray(scaled_score, dtype=np.float64),
        cluster_sizes=kmeans_cluster_sizes(image_embeddings, clusters, seed),
        pos=pos_shares(texts),
    )
