"""Cross-snapshot dedup: earliest snapshot wins.

The index holds the kept pairs of earlier snapshots (their pHash and image embedding). A new
snapshot's pairs are clustered together with the index — pHash Hamming distance ≤ k, and cosine
distance ≤ β on the image embeddings when semantic dedup is on — and a new pair whose cluster holds
an index row is dropped as a duplicate of that row. The index rows come first in the combined array,
and the clustering functions label every row with the smallest row index of its cluster, so a label
below ``len(index)`` *is* the earlier row that the new pair duplicates.

Crawl ids sort chronologically as plain strings (``CC-MAIN-2008-2009`` < ``CC-MAIN-2012`` <
``CC-MAIN-2013-20`` < ``CC-MAIN-2026-08``), which defines "earlier".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .near_duplicates import cluster_near_duplicates, degenerate_hashes
from .semantic import semantic_clusters

SAME_PAIR = "cross_snapshot:same_pair"
PHASH_DUPLICATE = "cross_snapshot:phash"
SEMANTIC_DUPLICATE = "cross_snapshot:semantic"


@dataclass(frozen=True)
class CrossSnapshotMatches:
    duplicate_of: np.ndarray
    """Per new row: the index row it duplicates, or -1 when it is new."""
    reason: list[str | None]
    """Per new row: :data:`SAME_PAIR`, :data:`PHASH_DUPLICATE` or :data:`SEMANTIC_DUPLICATE` (checked in that
    order) or None."""

    @property
    def kept(self) -> np.ndarray:
        return self.duplicate_of < 0


def match_against_index(
    index_phash: np.ndarray,
    new_phash: np.ndarray,
    *,
    phash_max_distance: int,
    index_vectors: np.ndarray | None = None,
    new_vectors: np.ndarray | None = None,
    semantic_max_distance: float = -1.0,
    index_uids: np.ndarray | None = None,
    new_uids: np.ndarray | None = None,
) -> CrossSnapshotMatches:
    """Which new rows duplicate a row of the index.

    ``*_phash``: uint64 pHashes (degenerate ones never match). ``*_vectors``: n×d image embeddings (rows
    of NaN never match); both or neither. ``semantic_max_distance`` < 0 switches semantic matching off.
    ``*_uids``: pair ids (image URL + caption); the same pair seen again is a duplicate even if the image changed.
    """
    index_phash = np.asarray(index_phash, dtype=np.uint64)
    new_phash = np.asarray(new_phash, dtype=np.uint64)
    m, n = index_phash.size, new_phash.size
    duplicate_of = np.full(n, -1, dtype=np.int64)
    reason: list[str | None] = [None] * n
    if n == 0 or m == 0:
        return CrossSnapshotMatches(duplicate_of, reason)

    if index_uids is not None and new_uids is not None:
        first = {uid: i for i, uid in reversed(list(enumerate(index_uids)))}
        for i, uid in enumerate(new_uids):
            if uid in first:
                duplicate_of[i], reason[i] = first[uid], SAME_PAIR

    hashes = np.concatenate([index_phash, new_phash])
    labels = cluster_near_duplicates(hashes, phash_max_distance, exclude=degenerate_hashes(hashes))[m:]
    hit = (labels < m) & (duplicate_of < 0)
    duplicate_of[hit] = labels[hit]
    for i in np.flatnonzero(hit):
        reason[i] = PHASH_DUPLICATE

    if semantic_max_distance >= 0 and index_vectors is not None and new_vectors is not None:
        vectors = np.concatenate([np.asarray(index_vectors, dtype=np.float32), np.asarray(new_vectors, dtype=np.float32)])
        missing = ~np.isfinite(vectors).all(axis=1)
        labels, _ = semantic_clusters(vectors, semantic_max_distance, exclude=missing)
        labels = labels[m:]
        hit = (labels < m) & (duplicate_of < 0)
        duplicate_of[hit] = labels[hit]
        for i in np.flatnonzero(hit):
            reason[i] = SEMANTIC_DUPLICATE
    return CrossSnapshotMatches(duplicate_of, reason)
