"""Cross-snapshot dedup: earliest snapshot wins.

The index holds the kept pairs of earlier snapshots (their pHash and image embedding). A new
snapshot's pairs are clustered together with the index — pHash Hamming distance ≤ k, and cosine
distance ≤ β on the image embeddings when semantic dedup is on — and a new pair whose cluster holds
an index row is dropped as a duplicate of that row. The index rows come first in the combined
numbering, and every row is labelled with the smallest row of its cluster, so a label below
``len(index)`` *is* the earlier row that the new pair duplicates.

pHashes (8 bytes a row) are clustered in memory. Embeddings (1.5 KB a row; ~150 GB for 100M index
rows) are not: the index may be given as several read-only, file-backed float16 segments, searched
exactly, block by block (:data:`BLOCK` rows, L2-normalised to float32 per block, pages released after
each), against the new rows in blocks too. Only the clusters that hold a new row matter, so instead of
the index's self-join the search finds: new–new pairs, new–index pairs, and then index–index pairs
outward from the index rows reached (repeated until no further row is reached: in a deduplicated
index, one pass that finds nothing new). The clusters of new rows are those of the full exact
clustering (:func:`.semantic.semantic_clusters` with ``index="flat"``) of index and new rows together.
Work is ∝ (index rows + new rows) × new rows × d: exact, and quadratic in the snapshot size.

Crawl ids sort chronologically as plain strings (``CC-MAIN-2008-2009`` < ``CC-MAIN-2012`` <
``CC-MAIN-2013-20`` < ``CC-MAIN-2026-08``), which defines "earlier".
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from ..embed.vector_file import drop_resident_pages
from .near_duplicates import _COMPACT_MIN_EDGES, _EdgeList, _forest, cluster_near_duplicates, degenerate_hashes
from .semantic import FLAT_BLOCK, faiss, row_norms, valid_norms

SAME_PAIR = "cross_snapshot:same_pair"
PHASH_DUPLICATE = "cross_snapshot:phash"
SEMANTIC_DUPLICATE = "cross_snapshot:semantic"
BLOCK = FLAT_BLOCK
"""Rows per searched block: one range search yields at most BLOCK² pairs; 12 MB of float32 at 768-d."""


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
    index_vectors: np.ndarray | Sequence[np.ndarray] | None = None,
    new_vectors: np.ndarray | None = None,
    semantic_max_distance: float = -1.0,
    index_uids: np.ndarray | pl.Series | None = None,
    new_uids: np.ndarray | pl.Series | None = None,
) -> CrossSnapshotMatches:
    """Which new rows duplicate a row of the index.

    ``*_phash``: uint64 pHashes (degenerate ones never match). ``*_vectors``: image embeddings (float16 or
    float32; rows with NaN/inf or zero norm never match); both or neither. ``index_vectors`` is one n×d array
    or a sequence of them (segments, concatenated in order), and may be read-only memory maps: they are
    only read a block at a time. ``semantic_max_distance`` < 0 switches semantic matching off.
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
        _mark(duplicate_of, reason, _same_pair_rows(index_uids, new_uids), m, SAME_PAIR)

    hashes = np.concatenate([index_phash, new_phash])
    labels = cluster_near_duplicates(hashes, phash_max_distance, exclude=degenerate_hashes(hashes))[m:]
    _mark(duplicate_of, reason, labels, m, PHASH_DUPLICATE)

    if semantic_max_distance >= 0 and index_vectors is not None and new_vectors is not None:
        if not semantic_max_distance <= 2.0 or math.isnan(semantic_max_distance):
            raise ValueError(f"semantic_max_distance must be a cosine distance in [0, 2], got {semantic_max_distance}")
        segments = [index_vectors] if isinstance(index_vectors, np.ndarray) else list(index_vectors)
        index, new = _Rows(segments), _Rows([new_vectors])
        if (index.size, new.size) != (m, n):
            raise ValueError(f"{index.size} index and {new.size} new vectors for {m} and {n} pHashes")
        _mark(duplicate_of, reason, _semantic_labels(index, new, np.float32(1.0 - semantic_max_distance)), m,
              SEMANTIC_DUPLICATE)
    return CrossSnapshotMatches(duplicate_of, reason)


def _mark(duplicate_of: np.ndarray, reason: list[str | None], labels: np.ndarray, m: int, why: str) -> None:
    """New rows labelled with an index row (< m) and not matched yet duplicate that row, for ``why``."""
    hit = (labels >= 0) & (labels < m) & (duplicate_of < 0)
    duplicate_of[hit] = labels[hit]
    for i in np.flatnonzero(hit):
        reason[i] = why


def _same_pair_rows(index_uids: np.ndarray | pl.Series, new_uids: np.ndarray | pl.Series) -> np.ndarray:
    """Per new row, the first index row with the same uid, or -1 (a hash join: no Python object per index row)."""
    index = pl.DataFrame({"uid": pl.Series(index_uids)}).with_row_index("row")
    new = pl.DataFrame({"uid": pl.Series(new_uids)})
    first = index.filter(pl.col("uid").is_in(new["uid"].implode())).group_by("uid").agg(pl.col("row").min())
    found = new.join(first, on="uid", how="left", maintain_order="left")["row"]
    return found.cast(pl.Int64).fill_null(-1).to_numpy()


class _Rows:
    """Rows of one or more n×d arrays (segments, concatenated in order), or a subset of them, read a block at a
    time as L2-normalised float32 (as :mod:`.semantic` normalises them); pages of file-backed segments are
    released after each block, so resident memory stays at a block whatever the segments' size."""

    def __init__(self, segments: Sequence[np.ndarray], ids: np.ndarray | None = None) -> None:
        self.segments = [np.asarray(s) for s in segments]
        if any(s.ndim != 2 for s in self.segments) or len({s.shape[1] for s in self.segments}) > 1:
            raise ValueError(f"vectors must be n×d arrays of one d, got shapes {[s.shape for s in self.segments]}")
        self.starts = np.cumsum([0] + [s.shape[0] for s in self.segments])
        self.ids = ids  # ascending row ids of a subset; None: all rows

    @property
    def size(self) -> int:
        return int(self.starts[-1]) if self.ids is None else int(self.ids.size)

    def subset(self, ids: np.ndarray) -> _Rows:
        return _Rows(self.segments, ids)

    def blocks(self, until: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(row ids, unit rows, valid) per block of :data:`BLOCK` rows; ``until``: stop after the block holding that row."""
        for start in range(0, self.size, BLOCK):
            stop = min(start + BLOCK, self.size)
            ids = np.arange(start, stop, dtype=np.int64) if self.ids is None else self.ids[start:stop]
            if until is not None and ids[0] > until:
                return
            yield ids, *self._unit(self._gather(ids))

    def _gather(self, ids: np.ndarray) -> np.ndarray:
        out = np.empty((ids.size, self.segments[0].shape[1]), dtype=np.float32)
        segment_of = np.searchsorted(self.starts, ids, side="right") - 1
        for s in np.unique(segment_of):
            mine = segment_of == s
            out[mine] = self.segments[s][ids[mine] - self.starts[s]]
            drop_resident_pages(self.segments[s])
        return out

    @staticmethod
    def _unit(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        norms = row_norms(rows)
        valid = valid_norms(norms)
        rows *= (1.0 / np.where(valid, norms, 1.0)).astype(np.float32)[:, None]
        rows[~valid] = 0.0  # never compared (pairs with them are dropped); zero keeps NaN out of faiss
        return rows, valid


def _close_pairs(fixed: _Rows, streamed: _Rows, threshold: np.float32, *,
                 same_rows: bool = False) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(streamed row, fixed row) pairs of valid rows at cosine similarity ≥ ``threshold``: each block of ``fixed``
    becomes a faiss flat index that every block of ``streamed`` is range-searched against. ``same_rows``: the two
    are the same rows; each pair comes once (streamed row < fixed row)."""
    radius = float(np.nextafter(threshold, np.float32(-np.inf)))
    for fixed_ids, fixed_block, fixed_valid in fixed.blocks():
        index = faiss.IndexFlatIP(fixed_block.shape[1])
        index.add(fixed_block)
        for ids, block, valid in streamed.blocks(until=int(fixed_ids[-1]) if same_rows else None):
            lims, sims, found = index.range_search(block, radius)
            query = np.repeat(np.arange(block.shape[0], dtype=np.int64), np.diff(lims.astype(np.int64)))
            found = found.astype(np.int64)
            keep = (sims >= threshold) & valid[query] & fixed_valid[found]
            a, b = ids[query[keep]], fixed_ids[found[keep]]
            if same_rows:
                a, b = a[a < b], b[a < b]
            if a.size:
                yield a, b


def _semantic_labels(index: _Rows, new: _Rows, threshold: np.float32) -> np.ndarray:
    """Per new row, the smallest row of its cluster, numbering index rows first (0..m-1) and new rows after."""
    m, n = index.size, new.size
    edges = _EdgeList(m + n, compact_at=_COMPACT_MIN_EDGES)
    for a, b in _close_pairs(new, new, threshold, same_rows=True):
        edges.add(a + m, b + m)
    reached = []
    for a, b in _close_pairs(new, index, threshold):
        edges.add(a, b + m)
        reached.append(a)
    _link_reached_index_rows(index, _unique(reached), threshold, edges)

    labels = np.arange(m, m + n, dtype=np.int64)
    if edges.emitted:
        nodes, roots = _forest(m + n, *edges.result())
        new_nodes = nodes >= m
        labels[nodes[new_nodes] - m] = roots[new_nodes]
    return labels


def _link_reached_index_rows(index: _Rows, reached: np.ndarray, threshold: np.float32, edges: _EdgeList) -> None:
    """Add the index–index pairs of the clusters that hold the ``reached`` index rows: search those rows against
    the whole index, then the rows that finds, until no new row turns up."""
    frontier = reached
    while frontier.size:
        found = []
        for a, b in _close_pairs(index.subset(frontier), index, threshold):
            edges.add(a, b)
            found.append(a)
        frontier = np.setdiff1d(_unique(found), reached, assume_unique=True)
        reached = np.union1d(reached, frontier)


def _unique(batches: list[np.ndarray]) -> np.ndarray:
    return np.unique(np.concatenate(batches)) if batches else np.empty(0, dtype=np.int64)
