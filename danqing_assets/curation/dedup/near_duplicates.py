"""Perceptual near-duplicate clustering of 64-bit pHashes, with no quadratic step.

Input: ``imagehash.phash`` values (8×8 bits, row-major, most significant bit first) as integers,
``int(str(imagehash.phash(img)), 16)``, in a numpy ``uint64`` array. Two rows are near-duplicates
when the Hamming distance of their hashes is at most ``max_distance``; clusters are the connected
components of that graph (transitive, as union-find would give), found by
``scipy.sparse.csgraph.connected_components`` on the edge list.

Candidate pairs come from the block-permutation / multi-index method (Manku, Jain & Das Sarma 2007;
Norouzi, Punjani & Fleet 2012): split the 64 bits into ``m`` blocks; two hashes within distance ``k``
differ in at most ``k`` blocks, so they agree exactly on at least ``m − k`` of them (pigeonhole).
For every choice of ``m − k`` blocks, the hashes are bit-permuted so that those blocks form the
leading bits (the *prefix*), sorted, and only rows with equal prefix are compared: row ``i`` with
row ``i + o`` for ``o = 1, 2, …`` while any equal-prefix run continues, every step vectorised over
all runs at once (XOR + ``np.bitwise_count``). Each true pair is emitted once, by the first block
choice (in lexicographic order) that it agrees on, so the edge list holds no repeats (see below for
truncated runs).

Scaling guards:

* identical hashes are collapsed first (``np.unique``): the search runs on distinct values and the
  rows are mapped back, so a million copies of one meme cost nothing pairwise;
* ``m`` is picked by a cost model (C(m, k) sorts versus the expected random prefix collisions, with
  real hashes assumed ~2 bits less random than uniform); at k = 4 that is 7 blocks and ≥ 27 prefix
  bits for 10⁷–10⁸ distinct hashes (log2(n) + 2 ≈ 26–29), 6 blocks and ≥ 20 bits for 10⁵–10⁶;
* pathological runs (many *distinct* hashes sharing a prefix: a dense cloud of variants) are compared
  only with their ``max_offset`` nearest neighbours in sort order — approximate for those rows only
  (a cloud still links up through its sorted neighbours); the runs and rows affected are counted in
  :class:`NearDuplicateStats` and logged. Pairs whose first block choice truncated a run are then
  re-emitted by later choices, so a pair compared in *any* choice becomes an edge, and the edge list is
  compacted to a spanning forest (connected components again) whenever it passes max(n/2, 4M) edges.

Memory, beyond the caller's 8-byte input hashes: one n-sized uint64 buffer is the working copy — filled with the
hashes not excluded, sorted, deduplicated, then for each block choice permuted in place (from the previous
choice's layout, a chunk at a time) and sorted in place — and at the end the same memory holds the int64
labels; 1 byte per row marks the excluded rows. Everything else is O(chunk) or proportional to the near
duplicates only: candidate pairs are searched a chunk of sorted rows at a time, edges are hash-value pairs
(16 bytes each, compacted to a spanning forest past n/4), and the rows that join a cluster are found by
screening every row against a bitmap of the clustered values. Measured peak (``benchmarks/near_duplicates.py``,
5 % planted near-duplicates): ~17 bytes per hash of peak RSS above the input at 2M hashes (the 8-byte
buffer, the 1-byte mask, the edges and the spanning-forest temporaries), against ~75 before.

Degenerate hashes: flat or one-dimensional images (blank, one colour, a pure horizontal or vertical
gradient or band pattern) give low-information pHashes — 0, 0x8000000000000000, or bits only in the
first DCT row or column — that would merge unrelated images. :func:`degenerate_hashes` flags them and
:func:`cluster_near_duplicates` leaves them as singletons. (Measured with Pillow 13 / imagehash 4.3:
solid colours of every size give 0x0 (black) or 0x8000000000000000; horizontal ramps give
0x80/0x82/0xaa/0xab/0xd5/0xfe/0xff followed by 14 zero hex digits; vertical ramps give bits only in the
column mask 0x8080808080808080. A real photograph has no tied DCT coefficients and so, being split at
the median of 64 values, exactly 32 bits set. Nearly flat *noisy* images get essentially random
32-bit hashes: harmless for merging — they match nothing — and left to the image stage's pixel-std
filter.)
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import polars as pl
from scipy.sparse import coo_array
from scipy.sparse.csgraph import connected_components

log = logging.getLogger(__name__)

DEFAULT_MAX_DISTANCE = 4
"""Default Hamming threshold (see ``Settings.phash_max_distance``). Measured on the real samples:
the same picture re-encoded (JPEG/PNG/GIF/BMP/WebP/AVIF, EXIF-rotated then transposed, other ICC
profile) is at 0–2; distinct pictures at ≥ 18. pHashes of real images have exactly 32 bits set, so
their distances are even: 4 and 5 select the same pairs."""

DEFAULT_MAX_OFFSET = 64
"""Within one equal-prefix run, a row is compared with at most this many following rows."""

MAX_SUPPORTED_DISTANCE = 16
HASH_BITS = 64

FLAT_HASHES = np.array([0x0000000000000000, 0x8000000000000000], dtype=np.uint64)
"""pHashes of single-colour images: black (0) and any other colour (DC bit only)."""
FIRST_ROW_MASK = 0xFF00000000000000
"""Bits of the first DCT row: the hash of an image that varies only horizontally lives here."""
FIRST_COLUMN_MASK = 0x8080808080808080
"""Bits of the first DCT column: the hash of an image that varies only vertically lives here."""
MIN_POPCOUNT = 3
MAX_POPCOUNT = 61

# Cost model for choosing the number of blocks (nanoseconds on one core; only ratios matter).
_NS_SORT_PER_ROW = 25.0  # sort + neighbour compare + flatnonzero, per row and block choice
_NS_SEGMENT_PER_ROW = 6.0  # one shift/mask/or of the bit permutation, per row and segment
_NS_PER_PAIR = 60.0  # one candidate pair: gathers, XOR, popcount, run extension
_SKEW = 4.0  # real pHashes are not uniform (the DC bit is ~always set, low frequencies correlate): ~2 bits less
_NS_PER_CHOICE = 300_000.0  # Python overhead of one block choice
_MAX_CHOICES = 20_000
_COMPACT_MIN_EDGES = 4_000_000  # edge batches are reduced to a spanning forest past max(n/2, this) (n/4 for pHashes)
_CHUNK = 1 << 16  # rows per step of the chunked passes: their temporaries are O(1) in n and stay in cache
_MAX_SCREEN_BITS = 24  # the row screen of _rows_with_values: at most 16 MB of bools
_FIBONACCI = np.uint64(0x9E3779B97F4A7C15)  # 2**64 / golden ratio, odd
_ANY_HASH = 2**64 - 1  # the largest pHash: the node bound for edge lists whose nodes are hash values


@dataclass
class NearDuplicateStats:
    """What one clustering run did (for logs, benchmarks and the asset's metadata)."""

    rows: int = 0
    excluded: int = 0
    unique_hashes: int = 0
    max_distance: int = 0
    blocks: int = 0
    permutations: int = 0
    prefix_bits_min: int = 0
    candidate_pairs: int = 0
    """Pairs of distinct hashes whose full distance was computed."""
    edges: int = 0
    """Near-duplicate pairs of distinct hashes emitted (each pair once unless some run was truncated)."""
    clusters: int = 0
    """Clusters with two rows or more."""
    clustered_rows: int = 0
    """Rows in those clusters."""
    duplicate_rows: int = 0
    """Rows that are not their cluster's representative (clustered_rows − clusters)."""
    truncated_runs: int = 0
    """Equal-prefix runs (summed over block choices) longer than max_offset, compared approximately."""
    truncated_rows: int = 0
    longest_run: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, int | float]:
        return asdict(self)


@dataclass(frozen=True)
class BlockPlan:
    """How the 64 bits are split: block 0 is the most significant."""

    max_distance: int
    widths: tuple[int, ...]
    shifts: tuple[int, ...]  # position of each block's least significant bit

    @property
    def blocks(self) -> int:
        return len(self.widths)

    @property
    def choices(self) -> list[tuple[int, ...]]:
        """The block sets used as sort prefixes, in lexicographic order."""
        return list(itertools.combinations(range(self.blocks), self.blocks - self.max_distance))

    @property
    def prefix_bits_min(self) -> int:
        return sum(sorted(self.widths)[: self.blocks - self.max_distance])


def _as_uint64(hashes: np.ndarray | Sequence[int]) -> np.ndarray:
    if isinstance(hashes, (list, tuple)) or (isinstance(hashes, np.ndarray) and hashes.dtype == object):
        a = np.array([int(x) for x in hashes], dtype=np.uint64)  # Python ints up to 2**64 - 1
    else:
        a = np.asarray(hashes)
    if a.ndim != 1:
        raise ValueError(f"hashes must be one-dimensional, got shape {a.shape}")
    if a.dtype == np.uint64:
        return a
    if a.dtype == np.int64:  # a uint64 that went through a signed column: same bits
        return a.view(np.uint64)
    if a.dtype.kind == "u" or (a.dtype.kind == "i" and (a.size == 0 or a.min() >= 0)):
        return a.astype(np.uint64)
    if a.size == 0:
        return a.astype(np.uint64)
    raise TypeError(f"hashes must be unsigned 64-bit integers, got {a.dtype}")


def degenerate_hashes(hashes: np.ndarray | Sequence[int]) -> np.ndarray:
    """True where a pHash carries too little information to be matched: flat or one-dimensional images.

    Flagged: at most 3 or at least 61 bits set (0x0 and 0x8000000000000000 from single-colour images
    among them), and hashes whose bits all lie in the first DCT row or all in the first DCT column
    (images that vary along one axis only: ramps, stripes, bands — up to 8 bits set, so they would sit
    within distance 4 of many unrelated such images).
    """
    h = _as_uint64(hashes)
    flagged = np.empty(h.size, dtype=bool)
    for start in range(0, h.size, _CHUNK):  # chunked: the 8-byte temporaries stay small whatever n is
        flagged[start : start + _CHUNK] = _degenerate(h[start : start + _CHUNK])
    return flagged


def _degenerate(h: np.ndarray) -> np.ndarray:
    popcount = np.bitwise_count(h)
    only_first_row = (h & np.uint64(~FIRST_ROW_MASK & 0xFFFFFFFFFFFFFFFF)) == 0
    only_first_column = (h & np.uint64(~FIRST_COLUMN_MASK & 0xFFFFFFFFFFFFFFFF)) == 0
    return (popcount <= MIN_POPCOUNT) | (popcount >= MAX_POPCOUNT) | only_first_row | only_first_column | np.isin(
        h, FLAT_HASHES
    )


def block_plan(unique_hashes: int, max_distance: int, blocks: int | None = None) -> BlockPlan:
    """Pick the number of blocks for ``unique_hashes`` distinct values at ``max_distance``.

    More blocks mean longer prefixes (fewer random collisions to verify) but C(m, k) sorts; the cost
    model below balances the two assuming uniformly random hashes.
    """
    k = max_distance
    if not 1 <= k <= MAX_SUPPORTED_DISTANCE:
        raise ValueError(f"block plans exist for 1 <= max_distance <= {MAX_SUPPORTED_DISTANCE}, got {k}")
    if blocks is not None:
        if not k + 1 <= blocks <= HASH_BITS:
            raise ValueError(f"blocks must be in [{k + 1}, {HASH_BITS}] for max_distance {k}, got {blocks}")
        return _layout(blocks, k)
    n = max(unique_hashes, 2)
    best: tuple[float, int] | None = None
    for m in range(k + 1, HASH_BITS + 1):
        choices = math.comb(m, k)
        if choices > _MAX_CHOICES:
            break
        cost = _estimated_cost(n, k, m)
        if best is None or cost < best[0]:
            best = (cost, m)
    assert best is not None
    return _layout(best[1], k)


def _layout(m: int, k: int) -> BlockPlan:
    base, extra = divmod(HASH_BITS, m)
    widths = tuple(base + 1 if j < extra else base for j in range(m))
    shifts = tuple(HASH_BITS - sum(widths[: j + 1]) for j in range(m))
    return BlockPlan(max_distance=k, widths=widths, shifts=shifts)


def _estimated_cost(n: int, k: int, m: int) -> float:
    base, extra = divmod(HASH_BITS, m)
    chosen = m - k
    pairs = 0.0
    for wide in range(0, min(extra, chosen) + 1):  # choices with `wide` of the wider blocks
        count = math.comb(extra, wide) * math.comb(m - extra, chosen - wide)
        pairs += count * (n * (n - 1) / 2.0) * 2.0 ** -(chosen * base + wide)
    choices = math.comb(m, k)
    segments = min(m, 2 * min(m - k, k) + 1)  # bit runs moved by one permutation, at most
    per_choice = n * (_NS_SORT_PER_ROW + _NS_SEGMENT_PER_ROW * segments) + _NS_PER_CHOICE
    return choices * per_choice + pairs * _SKEW * _NS_PER_PAIR


IDENTITY_LAYOUT = tuple(range(HASH_BITS))


def _bit_positions(plan: BlockPlan, order: Sequence[int]) -> tuple[int, ...]:
    """The layout that puts the blocks in ``order`` from the most significant end: where each original bit goes."""
    position = [0] * HASH_BITS
    top = HASH_BITS
    for j in order:
        top -= plan.widths[j]
        for bit in range(plan.widths[j]):
            position[plan.shifts[j] + bit] = top + bit
    return tuple(position)


def _moves(source: Sequence[int], target: Sequence[int]) -> list[tuple[int, int, int]]:
    """(source shift, destination shift, width) runs of bits that move together from layout ``source`` to
    layout ``target`` (each gives, per original bit, its position)."""
    segs: list[tuple[int, int, int]] = []
    for src, dst in sorted(zip(source, target)):  # by position in the source, lowest first
        run_src, run_dst, width = segs[-1] if segs else (-2, -2, 0)
        if run_src + width == src and run_dst + width == dst:
            segs[-1] = (run_src, run_dst, width + 1)
        else:
            segs.append((src, dst, 1))
    return segs


def _permute(
    values: np.ndarray,
    segs: Sequence[tuple[int, int, int]],
    out: np.ndarray | None = None,
    tmp: np.ndarray | None = None,
) -> np.ndarray:
    """Move each (source shift, destination shift, width) bit run of every value (into ``out`` if given)."""
    out = np.empty_like(values) if out is None else out
    tmp = (np.empty_like(values) if tmp is None else tmp) if len(segs) > 1 else out
    for t, (src, dst, w) in enumerate(segs):
        target = out if t == 0 else tmp
        mask = np.uint64(((1 << w) - 1) << dst)
        if src > dst:
            np.right_shift(values, np.uint64(src - dst), out=target)
            np.bitwise_and(target, mask, out=target)
        elif src < dst:
            np.left_shift(values, np.uint64(dst - src), out=target)
            np.bitwise_and(target, mask, out=target)
        else:
            np.bitwise_and(values, mask, out=target)
        if t:
            np.bitwise_or(out, tmp, out=out)
    return out


def _permute_in_place(values: np.ndarray, segs: Sequence[tuple[int, int, int]]) -> None:
    """:func:`_permute` over ``values`` in place, a chunk at a time: no second n-sized array."""
    out = np.empty(min(_CHUNK, values.size), dtype=np.uint64)
    tmp = np.empty_like(out)
    for start in range(0, values.size, _CHUNK):
        part = values[start : start + _CHUNK]
        part[:] = _permute(part, segs, out=out[: part.size], tmp=tmp[: part.size])


def _agree_mask(xor: np.ndarray, plan: BlockPlan) -> np.ndarray:
    """Bit j set where the two hashes (given by their XOR, original layout) agree on block j."""
    agree = np.zeros(xor.shape, dtype=np.uint64)
    for j, (w, s) in enumerate(zip(plan.widths, plan.shifts)):
        block_zero = (xor & np.uint64(((1 << w) - 1) << s)) == 0
        agree |= block_zero.astype(np.uint64) << np.uint64(j)
    return agree


def _first_choice_masks(agree: np.ndarray, chosen: int) -> np.ndarray:
    """Bitmask of the lowest ``chosen`` set bits of each ``agree`` (the lexicographically first choice)."""
    remaining = agree.copy()
    first = np.zeros_like(agree)
    for _ in range(chosen):
        low = remaining & (~remaining + np.uint64(1))
        first |= low
        remaining ^= low
    return first


def near_duplicate_clusters(
    hashes: np.ndarray | Sequence[int],
    max_distance: int = DEFAULT_MAX_DISTANCE,
    exclude: np.ndarray | None = None,
    *,
    max_offset: int = DEFAULT_MAX_OFFSET,
    blocks: int | None = None,
) -> tuple[np.ndarray, NearDuplicateStats]:
    """:func:`cluster_near_duplicates` with the run's statistics."""
    started = time.perf_counter()
    h = _as_uint64(hashes)
    n = h.size
    k = int(max_distance)
    if not 0 <= k <= MAX_SUPPORTED_DISTANCE:
        raise ValueError(f"max_distance must be in [0, {MAX_SUPPORTED_DISTANCE}], got {max_distance}")
    if max_offset < 1:
        raise ValueError("max_offset must be at least 1")
    if exclude is None:
        excluded = degenerate_hashes(h)
    else:
        excluded = np.asarray(exclude, dtype=bool)
        if excluded.shape != (n,):
            raise ValueError(f"exclude must have shape ({n},), got {excluded.shape}")
    stats = NearDuplicateStats(rows=n, max_distance=k, excluded=int(np.count_nonzero(excluded)))

    # One n-sized buffer serves as the working copy of the distinct hashes and then as the labels: the peak holds
    # one such array whatever the allocator does with freed memory.
    buffer = np.empty(n, dtype=np.uint64)
    unique, repeated = _distinct_sorted(h, excluded, buffer)
    stats.unique_hashes = unique.size
    if k > 0 and unique.size > 1:
        plan = block_plan(unique.size, k, blocks)
        edges_a, edges_b = _near_pairs(unique, plan, max_offset, stats)  # scrambles ``unique``: its last use
    else:
        edges_a = edges_b = np.empty(0, dtype=np.uint64)
    del unique
    node_values, node_component = _value_components(edges_a, edges_b, repeated)
    del edges_a, edges_b, repeated

    # Only rows whose value is a node (repeated, or on an edge) join a cluster; every other row is its own label.
    rows, component = _rows_with_values(h, excluded, node_values, node_component)
    labels = buffer.view(np.int64)
    for start in range(0, n, _CHUNK):
        labels[start : start + _CHUNK] = np.arange(start, min(start + _CHUNK, n))
    smallest_row = np.full(int(node_component.max()) + 1 if node_values.size else 0, n, dtype=np.int64)
    np.minimum.at(smallest_row, component, rows)
    labels[rows] = smallest_row[component]

    sizes = np.bincount(component, minlength=smallest_row.size)
    stats.clusters = int(np.count_nonzero(sizes >= 2))
    stats.clustered_rows = int(sizes[sizes >= 2].sum())
    stats.duplicate_rows = stats.clustered_rows - stats.clusters
    stats.seconds = time.perf_counter() - started
    log.info(
        "near-duplicates: %d rows (%d excluded, %d distinct hashes), k=%d, %d blocks, %d permutations, "
        "%d candidate pairs, %d edges, %d clusters holding %d rows, %.1fs",
        n, stats.excluded, stats.unique_hashes, k, stats.blocks, stats.permutations, stats.candidate_pairs,
        stats.edges, stats.clusters, stats.clustered_rows, stats.seconds,
    )  # fmt: skip
    if stats.truncated_runs:
        log.warning(
            "near-duplicates: %d equal-prefix runs (%d rows, longest %d) exceeded max_offset=%d and were compared "
            "with their %d nearest sorted neighbours only",
            stats.truncated_runs, stats.truncated_rows, stats.longest_run, max_offset, max_offset,
        )  # fmt: skip
    return labels, stats


def cluster_near_duplicates(
    hashes: np.ndarray | Sequence[int],
    max_distance: int = DEFAULT_MAX_DISTANCE,
    exclude: np.ndarray | None = None,
) -> np.ndarray:
    """Cluster label per row: rows whose pHashes are linked by a chain of Hamming distances ≤ ``max_distance``
    share the label, which is the smallest row index in the cluster.

    ``exclude`` (bool per row) rows are singletons (label = own index); when ``exclude`` is None the
    :func:`degenerate_hashes` are excluded. Pass ``exclude=degenerate_hashes(h) | other`` to combine.
    """
    return near_duplicate_clusters(hashes, max_distance, exclude)[0]


def _near_pairs(
    unique: np.ndarray, plan: BlockPlan, max_offset: int, stats: NearDuplicateStats
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of values (of the sorted distinct ``unique``) linking every pair within ``plan.max_distance``.

    ``unique`` is the working buffer: each block choice permutes it in place from the previous choice's
    layout and sorts it, so no second n-sized array exists; its contents are scrambled on return. Edges
    are therefore the hash values themselves (original layout), not indices. The sorted keys are searched
    a chunk of rows at a time (a row's comparisons depend only on the sorted keys after it), so the
    candidate arrays stay O(chunk) too.

    Without truncated runs this is each such pair exactly once. Once a block choice has truncated a run,
    later choices also emit the pairs whose first choice it was (they may have gone uncompared there);
    repeated edges are then bounded by compacting the edge list to a spanning forest when it grows.
    """
    n = unique.size
    choices = plan.choices
    stats.blocks, stats.permutations, stats.prefix_bits_min = plan.blocks, len(choices), plan.prefix_bits_min
    truncated_choices: list[int] = []  # block bitmasks of the choices that truncated a run
    edges = _EdgeList(_ANY_HASH, compact_at=max(n // 4, _COMPACT_MIN_EDGES))  # 16 bytes an edge: ≤ 4 per hash
    key = unique
    layout = IDENTITY_LAYOUT

    for choice in choices:
        order = list(choice) + [j for j in range(plan.blocks) if j not in choice]
        target = _bit_positions(plan, order)
        _permute_in_place(key, _moves(layout, target))
        layout = target
        key.sort()
        emission = _Emission.for_choice(plan, choice, order, _moves(layout, IDENTITY_LAYOUT), truncated_choices)
        shift = HASH_BITS - sum(plan.widths[j] for j in choice)
        truncated = [np.empty(0, dtype=np.intp)]
        for start in range(0, n - 1, _CHUNK):
            active = _shared_prefix_starts(key, start, min(start + _CHUNK, n - 1), shift)
            truncated.append(_search_runs(key, active, shift, max_offset, emission, edges, stats))
        still_going = np.concatenate(truncated)
        if still_going.size:
            _record_truncation(key, still_going, shift, stats)
            truncated_choices.append(sum(1 << j for j in choice))

    stats.edges = edges.emitted
    return edges.result()


@dataclass(frozen=True)
class _Emission:
    """Which near pairs found under one block choice are emitted there: those it is the first choice of."""

    plan: BlockPlan
    earlier_masks: tuple[np.uint64, ...]  # unchosen blocks before the last chosen one (key layout)
    truncated_masks: np.ndarray  # block bitmasks of earlier choices that truncated a run
    back: tuple[tuple[int, int, int], ...]  # key layout -> original layout

    @classmethod
    def for_choice(
        cls, plan: BlockPlan, choice: tuple[int, ...], order: Sequence[int], back: Sequence[tuple[int, int, int]],
        truncated_choices: Sequence[int],
    ) -> _Emission:
        # a pair's first choice is this one unless it also agrees on an unchosen block before the last chosen one
        earlier_masks = []
        top = HASH_BITS
        for j in order:
            top -= plan.widths[j]
            if j not in choice and j < choice[-1]:
                earlier_masks.append(np.uint64(((1 << plan.widths[j]) - 1) << top))
        return cls(plan, tuple(earlier_masks), np.array(truncated_choices, dtype=np.uint64), tuple(back))

    def emitted(self, xor: np.ndarray) -> np.ndarray:
        """Per near pair (XOR of its keys): whether this choice emits it."""
        keep = np.ones(xor.size, dtype=bool)
        for mask in self.earlier_masks:
            keep &= (xor & mask) != 0
        if self.truncated_masks.size and not keep.all():  # a truncating first choice may have missed the pair
            chosen_count = self.plan.blocks - self.plan.max_distance
            first = _first_choice_masks(_agree_mask(_permute(xor, self.back), self.plan), chosen_count)
            keep |= np.isin(first, self.truncated_masks)
        return keep


def _search_runs(
    key: np.ndarray, active: np.ndarray, shift: int, max_offset: int, emission: _Emission, edges: _EdgeList,
    stats: NearDuplicateStats,
) -> np.ndarray:
    """Compare row i with rows i + 1, i + 2, … of the sorted ``key`` while they share the prefix, for the ``active``
    rows, every step vectorised over them; emit the near pairs. The rows whose run went on past ``max_offset``."""
    prefix_limit = np.uint64(1 << shift)  # two keys share the prefix when their XOR is below this
    offset = 1
    while active.size:
        a = key[active]
        b = key[active + offset]
        xor = a ^ b
        hit = np.bitwise_count(xor) <= emission.plan.max_distance
        stats.candidate_pairs += active.size
        if hit.any():
            keep = np.flatnonzero(hit)[emission.emitted(xor[hit])]
            if keep.size:
                edges.add(_permute(a[keep], emission.back), _permute(b[keep], emission.back))
        if offset >= max_offset:
            return active
        # runs are contiguous in sort order: row i's run reaches i + offset + 1 iff their prefixes agree
        active = active[active + offset + 1 < key.size]
        active = active[(key[active] ^ key[active + offset + 1]) < prefix_limit]
        offset += 1
    return active


def _shared_prefix_starts(key: np.ndarray, start: int, stop: int, shift: int) -> np.ndarray:
    """Indices i in start..stop-1 of the sorted ``key`` where keys i and i + 1 share the prefix."""
    step = np.bitwise_xor(key[start + 1 : stop + 1], key[start:stop])
    return np.flatnonzero(step < np.uint64(1 << shift)) + start


def _distinct_sorted(h: np.ndarray, excluded: np.ndarray, buffer: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct values of the rows not excluded, sorted, at the start of ``buffer`` (n-sized), and the values
    that occur on more than one of those rows (sorted). Filled, sorted and deduplicated in place."""
    values = buffer[: h.size - int(np.count_nonzero(excluded))]
    filled = 0
    for start in range(0, h.size, _CHUNK):
        part = h[start : start + _CHUNK][~excluded[start : start + _CHUNK]]
        values[filled : filled + part.size] = part
        filled += part.size
    values.sort()
    return _squeeze_sorted(values)


def _squeeze_sorted(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop the repeats of sorted ``values`` in place, a chunk at a time: (the distinct prefix, the repeated values)."""
    kept = 0
    previous: np.uint64 | None = None  # the last value of the chunk before (read before it can be overwritten)
    repeated = [np.empty(0, dtype=np.uint64)]
    for start in range(0, values.size, _CHUNK):
        part = values[start : start + _CHUNK]
        new = np.empty(part.size, dtype=bool)
        np.not_equal(part[1:], part[:-1], out=new[1:])
        new[0] = previous is None or part[0] != previous
        previous = part[-1]
        repeated.append(np.unique(part[~new]))
        fresh = part[new]  # a copy: writing it back cannot clobber what it reads
        values[kept : kept + fresh.size] = fresh
        kept += fresh.size
    return values[:kept], np.unique(np.concatenate(repeated))


def _value_components(
    edges_a: np.ndarray, edges_b: np.ndarray, repeated: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The values that can share a cluster (on an edge, or repeated), sorted, and a component number for each."""
    if edges_a.size:
        linked, roots = _forest(_ANY_HASH, edges_a, edges_b)
    else:
        linked = roots = np.empty(0, dtype=np.uint64)
    values = np.union1d(linked, repeated)
    root = values.copy()  # a repeated value on no edge is its own component
    root[np.searchsorted(values, linked)] = roots
    return values, np.unique(root, return_inverse=True)[1]


def _rows_with_values(
    h: np.ndarray, excluded: np.ndarray, values: np.ndarray, component: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The rows (not excluded, ascending) whose hash is one of the sorted ``values``, and that value's component.

    A bitmap of the values' hashed slots (≥ 8 slots per value, so most other rows miss) screens the rows
    first; only the few that hit are binary-searched.
    """
    index_dtype = np.int32 if h.size < 2**31 else np.int64
    rows = [np.empty(0, dtype=index_dtype)]
    components = [np.empty(0, dtype=index_dtype)]
    if values.size:
        bits = min(max(int(8 * values.size).bit_length(), 16), _MAX_SCREEN_BITS)
        screen = np.zeros(1 << bits, dtype=bool)
        screen[_slots(values, bits)] = True
        for start in range(0, h.size, _CHUNK):
            part = h[start : start + _CHUNK]
            maybe = np.flatnonzero(screen[_slots(part, bits)] & ~excluded[start : start + _CHUNK])
            position = np.minimum(np.searchsorted(values, part[maybe]), values.size - 1)
            found = values[position] == part[maybe]
            rows.append((maybe[found] + start).astype(index_dtype))
            components.append(component[position[found]].astype(index_dtype))
    return np.concatenate(rows), np.concatenate(components)


def _slots(values: np.ndarray, bits: int) -> np.ndarray:
    """Multiplicative (Fibonacci) hashing of 64-bit values to ``bits``-bit slots: spreads structured values too."""
    return np.right_shift(np.multiply(values, _FIBONACCI), np.uint64(HASH_BITS - bits))


class _EdgeList:
    """Edge batches; when they pass ``compact_at`` they are replaced by a spanning forest (node → root)."""

    def __init__(self, nodes: int, compact_at: int) -> None:
        self.nodes = nodes
        self.compact_at = compact_at
        self.a: list[np.ndarray] = []
        self.b: list[np.ndarray] = []
        self.held = 0
        self.emitted = 0

    def add(self, a: np.ndarray, b: np.ndarray) -> None:
        self.a.append(a)
        self.b.append(b)
        self.held += a.size
        self.emitted += a.size
        if self.held > self.compact_at:
            nodes, roots = _forest(self.nodes, *self.result())
            linked = nodes != roots
            self.a, self.b = [nodes[linked]], [roots[linked]]
            self.held = int(linked.sum())
            self.compact_at = max(self.compact_at, 2 * self.held)

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        if not self.a:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
        if len(self.a) > 1:
            self.a, self.b = [np.concatenate(self.a)], [np.concatenate(self.b)]
        return self.a[0], self.b[0]


def _record_truncation(key: np.ndarray, active: np.ndarray, shift: int, stats: NearDuplicateStats) -> None:
    """Count the equal-prefix runs still going at max_offset, and their rows."""
    first = np.unique(key[active] >> np.uint64(shift)) << np.uint64(shift)  # smallest key of each run's prefix
    last = first | np.uint64((1 << shift) - 1)
    lengths = np.searchsorted(key, last, side="right") - np.searchsorted(key, first, side="left")
    stats.truncated_runs += first.size
    stats.truncated_rows += int(lengths.sum())
    stats.longest_run = max(stats.longest_run, int(lengths.max()))


def _forest(n: int, edges_a: np.ndarray, edges_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The nodes on any edge, and for each the smallest node of its connected component (``n``: no node is
    above it — the node count for indices, :data:`_ANY_HASH` for hash values)."""
    # sort in place and binary-search the ends: a third of np.unique(return_inverse=True)'s temporaries
    nodes = np.concatenate([edges_a, edges_b])
    nodes.sort()
    first = np.ones(nodes.size, dtype=bool)
    np.not_equal(nodes[1:], nodes[:-1], out=first[1:])
    nodes = nodes[first]
    index_dtype = np.int32 if nodes.size < 2**31 else np.int64
    local_a = np.searchsorted(nodes, edges_a).astype(index_dtype)
    local_b = np.searchsorted(nodes, edges_b).astype(index_dtype)
    graph = coo_array(
        (np.ones(local_a.size, dtype=np.int8), (local_a, local_b)), shape=(nodes.size, nodes.size)
    ).tocsr()
    count, cc = connected_components(graph, directed=True, connection="weak")
    root = np.full(count, n, dtype=nodes.dtype)
    np.minimum.at(root, cc, nodes)
    return nodes, root[cc]


def _components(n: int, edges_a: np.ndarray, edges_b: np.ndarray) -> np.ndarray:
    """Per node, the smallest node of its connected component (only nodes on an edge can be merged)."""
    component = np.arange(n, dtype=np.int64)
    if edges_a.size:
        nodes, roots = _forest(n, edges_a, edges_b)
        component[nodes] = roots
    return component


def pick_representatives(
    labels: np.ndarray,
    priority: pl.DataFrame | None = None,
    *,
    area: np.ndarray | Sequence[int] | None = None,
    snapshot: np.ndarray | Sequence[str] | None = None,
    uid: np.ndarray | Sequence | None = None,
) -> np.ndarray:
    """Bool mask with exactly one True per cluster label: the row to keep.

    Priority: largest ``area`` (width × height), then earliest ``snapshot`` (crawl ids such as
    ``CC-MAIN-2026-08`` sort as strings), then smallest ``uid``, then smallest row index. Missing values
    (nulls) rank last. Give either ``priority`` — a frame with ``area`` or ``width`` and ``height``,
    ``snapshot`` and ``uid`` columns, one row per label — or the three arrays.
    """
    labels = np.asarray(labels, dtype=np.int64)
    if priority is not None:
        if "area" in priority.columns:
            area_col = priority.get_column("area").cast(pl.Int64)
        else:
            area_col = priority.get_column("width").cast(pl.Int64) * priority.get_column("height").cast(pl.Int64)
        frame = pl.DataFrame(
            {"area": area_col, "snapshot": priority.get_column("snapshot"), "uid": priority.get_column("uid")}
        )
    else:
        if area is None or snapshot is None or uid is None:
            raise ValueError("give a priority frame or all of area, snapshot and uid")
        frame = pl.DataFrame(
            {"area": pl.Series(area).cast(pl.Int64), "snapshot": pl.Series(snapshot), "uid": pl.Series(uid)}
        )
    if frame.height != labels.size:
        raise ValueError(f"{labels.size} labels but {frame.height} priority rows")
    mask = np.zeros(labels.size, dtype=bool)
    if labels.size == 0:
        return mask
    ordered = frame.with_columns(label=pl.Series(labels), row=pl.int_range(frame.height, dtype=pl.Int64)).sort(
        ["label", "area", "snapshot", "uid", "row"],
        descending=[False, True, False, False, False],
        nulls_last=True,
    )
    sorted_labels = ordered.get_column("label").to_numpy()
    starts = np.ones(sorted_labels.size, dtype=bool)
    starts[1:] = sorted_labels[1:] != sorted_labels[:-1]
    mask[ordered.get_column("row").to_numpy()[starts]] = True
    return mask


def _pairs_bruteforce(
    hashes: np.ndarray | Sequence[int], max_distance: int, exclude: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """All row pairs i < j (neither excluded) with Hamming distance ≤ ``max_distance``. O(n²): tests only."""
    h = _as_uint64(hashes)
    ok = np.ones(h.size, dtype=bool) if exclude is None else ~np.asarray(exclude, dtype=bool)
    return _close_pairs(h.size, ok, lambda start, stop: np.bitwise_count(h[start:stop, None] ^ h[None, :]) <= max_distance)


def _close_pairs(n: int, ok: np.ndarray, close: Callable[[int, int], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force pairs i < j of valid rows where ``close(start, stop)`` (rows start..stop × all rows, bool)
    holds, 1,024 rows at a time: the reference the tests check the fast searches against."""
    out_i: list[np.ndarray] = []
    out_j: list[np.ndarray] = []
    step = 1024
    for start in range(0, n, step):
        i, j = np.nonzero(close(start, min(start + step, n)))
        i += start
        sel = (i < j) & ok[i] & ok[j]
        out_i.append(i[sel].astype(np.int64))
        out_j.append(j[sel].astype(np.int64))
    if not out_i:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    return np.concatenate(out_i), np.concatenate(out_j)
