"""Semantic near-duplicate clustering of CLIP image embeddings, with a vector index instead of all pairs.

Two rows are near-duplicates when the cosine distance of their embeddings, ``1 − cos(i, j)``, is at most
``max_distance`` (the DanQing paper's β = 0.1); clusters are the connected components of that graph
(transitive, as union-find would give), found the same way as the pHash clusters of
:mod:`.near_duplicates` (edge batches compacted to a spanning forest, then
``scipy.sparse.csgraph.connected_components``). A cluster's label is its smallest row index, so
:func:`.near_duplicates.pick_representatives` applies unchanged.

Rows are L2-normalised here (in float32, per batch: a float16 input is never copied whole), so
"cosine" is exact even when the stored vectors drifted from unit length; rows with NaN/inf values or
zero norm are *invalid*: excluded (singletons) and counted. Rows with identical bytes are collapsed
first (a 64-bit multiply-sum hash, then verified), so a million copies of one logo cost nothing
pairwise and never crowd a k-NN list.

Index choice (``index=``; ``"auto"`` picks ``"flat"`` up to :data:`FLAT_MAX_ROWS` distinct rows, else
``"ivf"``):

``"flat"`` — exact. ``faiss.IndexFlatIP`` over blocks of :data:`FLAT_BLOCK` rows, ``range_search``
    of each block against itself and every later block (the upper triangle only: half the work of a
    full self-join). Every pair at distance ≤ β becomes an edge (``k`` plays no part): the components
    are exactly those of brute force. Work ∝ n²·d: ~0.8 s per 10⁸ pairs at 768-d on 2 cores, so 200k
    rows take ~3 min and 1M would take ~1.2 h.

``"ivf"`` — approximate: an inverted-file self-join, list by list (the idea of
    ``faiss.contrib.big_batch_search``). Spherical k-means (``faiss.Kmeans``, ``nlist`` ≈ 2·sqrt(n)
    centroids, 10 iterations on ≤ 39 sampled rows per centroid) partitions the rows by nearest centroid
    (``IndexFlatIP`` quantizer); each row also queries the lists of its ``nprobe`` nearest centroids. Per
    list, all its queries meet all its members in one GEMM (numpy; faiss's ``IndexFlatIP.search`` on
    lists of a few hundred rows measured 2–30× slower); pairs within β are kept, at most ``k`` per query
    and list (the most similar: a k-NN search followed by the threshold). A pair i–j is compared when
    j's list is among i's probes *or* the reverse. Work ∝ n·nlist·d (assignment) + nprobe·n²·d / nlist
    (join). Two guards keep the join near that bound on clustered data, where "hub" centroids (mixtures,
    about equally close to everything) would otherwise be probed by most rows:

    * probes whose score gap to the best centroid is too large for any near-duplicate's nearest centroid
      to lie there are dropped (:func:`_prune_probes`: ``probe_sigmas`` standard deviations of an
      isotropic perturbation at distance β, in an effective dimension ≤ :data:`PROBE_EFFECTIVE_DIM`);
    * a list answers at most :data:`LIST_QUERY_FACTOR` × the average number of queries (or its own
      members, if more), keeping the probes with the smallest gap.

    Both are counted (:attr:`SemanticDedupStats.pruned_probes`, ``capped_probes``). On the synthetic
    "topics" data of the benchmark they cut the 1M-row join from 78·10⁹ to 10·10⁹ similarities (12.5 →
    1.7 min) with recall unchanged (100%); on structureless data they drop next to nothing.

``"hnsw"`` — approximate: ``faiss.IndexHNSWFlat`` (inner product, M = 32), each row's ``k + 1``
    nearest neighbours (efSearch ≥ 64). Offered for comparison only: on 200k × 768-d it took 6 min
    (3.5 build + 2.5 search) for 99.1% recall where "ivf" took 25 s for 99.96%; its parallel build is
    not deterministic (``threads=1`` for reproducible edges).

Recall trade-off of the approximate modes:

* *k*: each row keeps at most ``k`` neighbours per searched list (ivf) or overall (hnsw). A row with more
  than ``k`` near-duplicates links only its ``k`` nearest; the cluster still connects through those
  neighbours' own edges (a dense cloud's k-NN graph is connected in practice), but chains are not
  guaranteed. :attr:`SemanticDedupStats.saturated` counts the (query, list) searches that had more than
  ``k`` hits — where raising ``k`` could add edges. The cap bounds edges by n·nprobe·k however dense the
  data. (Rows with identical bytes are merged before, so exact copies never use up ``k``.)
* *nprobe* (ivf): a pair straddling cells is missed when neither row probes the other's cell. Close
  pairs almost always share a cell; the hardest are those right at β. Measured at 1M rows (planted
  copies at distance uniform in [0, 0.098]) on uniformly random unit vectors — the worst case: no
  structure for k-means to align with — nprobe = 16 joins 99.84% of planted pairs (99.2% of those at
  0.09–0.1) in ~2 min, nprobe = 32 99.99% (99.9%) in ~4 min; on the clustered "topics" data 100%.
* *hnsw*: graph search misses a few true nearest neighbours (efSearch trades time for recall).

Missed pairs only split clusters (a duplicate survives); every edge is a verified similarity ≥ 1 − β,
so the approximate modes never merge what the exact one would not.

Memory stays bounded: queries go in batches (:data:`QUERY_BATCH` rows), rows are converted to float32
:data:`GATHER_BATCH` at a time, ivf similarity blocks hold at most :data:`JOIN_BLOCK` values, exact range
results per block pair at most ``FLAT_BLOCK²`` pairs, and edge batches are reduced to a spanning forest as
they grow. The input may be a read-only memory map (a :class:`..embed.vector_file.VectorFile`): rows are
only gathered in batches, and the pages a gather mapped are dropped from the process after every
:data:`RESIDENT_BUDGET` bytes of it (:func:`_resident_parts`), so the input costs no resident memory
beyond that. What the call holds then, per input row (n) and per distinct searched row (m ≤ n):

* always ~45 bytes per row: labels (int64), norms → inverse norms (float32), active / representative /
  searched row ids (int64), plus ~50 bytes per row while identical rows are collapsed (hashes and their
  argsort, freed before the search);
* ivf, nprobe P: 12·P + 4 bytes per searched row at the peak (probes int32, their scores and
  plausibility float32, member order int32; the scores are freed before the probes are grouped by
  cell, with an int32 counting sort, :func:`_group_by_cell`): 196 bytes at P = 16, 0.2 GB at 1M rows
  (it was 20·P + 12 = 332 bytes with int64 argsorts); the edges, int32, ≤ max(m/2, 4M) pairs before
  compaction;
* fixed or sublinear: the k-means training sample, float32, ``nlist·39`` rows ≈ 78·√m rows × d × 4
  bytes (122 MB at 200k 768-d rows, 245 MB at 1M, 490 MB at 8.5M: the largest term below ~4M rows),
  one query batch (16384 × d × 4: 50 MB at 768-d), one similarity block (32 MB);
* hnsw: a float32 copy of the rows plus its graph.

Threads: ``threads=None`` keeps faiss's default (OpenMP: all cores); otherwise faiss (k-means,
assignment, flat and hnsw search) uses that many for the call and is restored after — a process-wide
setting, so do not run two calls concurrently with different values. The ivf join's GEMMs run in
numpy's BLAS, whose threads follow ``OPENBLAS_NUM_THREADS`` (all cores by default).

BLAS: the ``faiss-cpu`` 1.15 wheels bundle OpenBLAS 0.3.15, which does not recognise recent Intel CPUs
(Sapphire Rapids, as on our 2-core workers) and falls back to generic SSE kernels — ~4× slower GEMMs
(50 vs 210 GFLOP/s measured). When this module is the first to import faiss and ``OPENBLAS_CORETYPE`` is
unset, it sets the core type for the import from the CPU flags (``SkylakeX`` with AVX-512, ``Haswell``
with AVX2 + FMA) and removes the variable again; the kernel in use is reported as
:attr:`SemanticDedupStats.blas` and a generic one is logged as a warning.

Determinism: same input, parameters and thread count → same labels (flat and ivf; k-means is seeded).
Pairs within float32 rounding (~1e-6) of the threshold may flip between thread counts or index types.
"""

from __future__ import annotations

import ctypes
import glob
import itertools
import logging
import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from types import ModuleType

import numpy as np

from danqing_assets.curation.dedup.near_duplicates import _close_pairs, _components, _EdgeList
from danqing_assets.curation.embed.vector_file import drop_resident_pages

log = logging.getLogger(__name__)

DEFAULT_MAX_DISTANCE = 0.1
"""β of the DanQing paper: cosine distance at or below which two image embeddings are near-duplicates."""
DEFAULT_K = 16
FLAT_MAX_ROWS = 50_000
"""``index="auto"`` searches exactly up to this many distinct rows. Exact work grows as n²: measured on 2
cores at 768-d, 200k rows took 546 s exactly against 44 s with "ivf" at the same recall, so exact search is
kept for snapshots small enough that n² stays cheap (50k: ~35 s, extrapolated) and its exactness is free."""
FLAT_BLOCK = 4096
"""Rows per exact block: one range search yields at most FLAT_BLOCK² pairs (~200 MB worst case)."""
QUERY_BATCH = 16_384
"""Query rows per search call (exact blocks aside)."""
GATHER_BATCH = 4096
"""Rows converted to float32 at a time when gathering (the copy of the stored rows is one batch at most)."""
RESIDENT_BUDGET = 32 * 2**20
"""File-backed input: bytes of its pages mapped at most between two drops (see :func:`_resident_parts`)."""
MAPPED_PER_FAULT = 4 * 2**20
"""Bytes one read fault may map: 64 KiB of fault-around on older kernels, but Linux 6.18 maps every
page-cache folio under that window whole, and ext4/xfs folios of a file written in large blocks reach PMD
size (2 MiB): two folios when the window straddles a boundary (measured: 2 MiB a scattered row)."""
SORT_CHUNK = 1 << 20
"""Probe entries sorted at a time when grouping them by cell."""
JOIN_BLOCK = 8_388_608
"""Similarities computed at once in the ivf join (32 MiB of float32): queries × list members."""
DEFAULT_NPROBE = 16
KMEANS_ITERATIONS = 10
KMEANS_POINTS_PER_CENTROID = 39
"""k-means trains on nlist × this many sampled rows (float32): 39 is the fewest faiss accepts without its
"please provide at least 39 × k training points" warning. The sample is the one part of the ivf search that
grows with the snapshot beyond a few bytes per row (~√n: 122 MB at 200k rows, 245 MB at 1M); 64 per
centroid cost 1.6× that and found the same planted duplicates."""
DEFAULT_PROBE_SIGMAS = 6.0
PROBE_EFFECTIVE_DIM = 256
LIST_QUERY_FACTOR = 4.0
"""A list answers at most this many times the average queries per list (nprobe·n/nlist), or its own members."""
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 64
HNSW_EF_SEARCH = 64
_COMPACT_MIN_EDGES = 4_000_000
_GENERIC_BLAS_CORES = {"prescott", "core2", "penryn", "dunnington", "nehalem", "atom", "katmai", "coppermine",
                       "northwood", "banias", "generic"}  # fmt: skip
INDEX_TYPES = ("auto", "flat", "ivf", "hnsw")


# --------------------------------------------------------------------------------------------- faiss import


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _openblas_core_for_cpu(flags: set[str]) -> str | None:
    if {"avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512cd"} <= flags:
        return "SkylakeX"
    if {"avx2", "fma"} <= flags:
        return "Haswell"
    return None


def _import_faiss() -> ModuleType:
    """Import faiss, letting its bundled OpenBLAS use AVX-512/AVX2 kernels on CPUs it does not know."""
    if "faiss" in sys.modules:
        import faiss

        return faiss
    core = None
    if "OPENBLAS_CORETYPE" not in os.environ and sys.platform.startswith("linux"):
        core = _openblas_core_for_cpu(_cpu_flags())
    if core:
        os.environ["OPENBLAS_CORETYPE"] = core  # read once, when libopenblas is loaded by the import
    try:
        import faiss
    finally:
        if core:
            del os.environ["OPENBLAS_CORETYPE"]  # not inherited by child processes
    return faiss


faiss = _import_faiss()


def faiss_blas_core() -> str:
    """The OpenBLAS kernel family faiss runs on ('SkylakeX', 'Haswell', 'Prescott', …), '' if unknown."""
    libs_dir = os.path.join(os.path.dirname(os.path.dirname(faiss.__file__)), "faiss_cpu.libs")
    for path in sorted(glob.glob(os.path.join(libs_dir, "libopenblas*.so*"))):
        try:
            lib = ctypes.CDLL(path)
            lib.openblas_get_corename.restype = ctypes.c_char_p
            return (lib.openblas_get_corename() or b"").decode()
        except (OSError, AttributeError):
            continue
    return ""


_BLAS_CORE = faiss_blas_core()
if _BLAS_CORE.lower() in _GENERIC_BLAS_CORES:
    log.warning(
        "faiss runs on OpenBLAS's generic %s kernels (~4x slower GEMMs); import %s before faiss, or set "
        "OPENBLAS_CORETYPE=SkylakeX (AVX-512) / Haswell (AVX2) in the environment", _BLAS_CORE, __name__,
    )  # fmt: skip


# --------------------------------------------------------------------------------------------------- stats


@dataclass
class SemanticDedupStats:
    """What one clustering run did (for logs, benchmarks and the asset's metadata)."""

    n: int = 0
    dim: int = 0
    index: str = ""
    """Index type used: "flat" (exact), "ivf" or "hnsw" (approximate)."""
    index_description: str = ""
    max_distance: float = 0.0
    k: int = 0
    threads: int = 0
    blas: str = ""
    invalid: int = 0
    """Rows with NaN/inf values or zero norm: excluded (singletons)."""
    excluded: int = 0
    """Valid rows excluded by the caller."""
    identical: int = 0
    """Rows with the same bytes as an earlier row: merged with it, not searched."""
    searched: int = 0
    """Distinct rows indexed and searched."""
    nlist: int = 0
    nprobe: int = 0
    largest_list: int = 0
    pruned_probes: int = 0
    """ivf probes beyond the best cell dropped as too far for any near-duplicate's nearest centroid."""
    capped_probes: int = 0
    """ivf probes dropped because their list (a hub) had more than LIST_QUERY_FACTOR× the average queries."""
    candidate_pairs: int = 0
    """Similarities computed (exact: searched·(searched−1)/2; ivf: Σ over lists of queries × members)."""
    saturated: int = 0
    """Approximate modes: (query, list) searches with more than k rows within max_distance, capped to k."""
    edges: int = 0
    """Near-duplicate pairs found (approximate modes count a pair found from both ends twice)."""
    clusters: int = 0
    """Clusters with two rows or more."""
    clustered_rows: int = 0
    duplicate_rows: int = 0
    """Rows that are not their cluster's representative (clustered_rows − clusters)."""
    seconds_prepare: float = 0.0
    """Validation, norms, identical-row collapse."""
    seconds_train: float = 0.0
    """k-means (ivf) or graph build (hnsw)."""
    seconds_assign: float = 0.0
    """Nearest centroids of every row (ivf)."""
    seconds_search: float = 0.0
    seconds_components: float = 0.0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, int | float | str]:
        return asdict(self)


# ---------------------------------------------------------------------------------------------- row access


class _Rows:
    """Gathers rows of the input as contiguous, L2-normalised float32 (never the whole input at once).

    A file-backed input (a read-only memory map, e.g. :class:`..embed.vector_file.VectorFile`) has the pages
    read by each gather dropped from this process afterwards, so resident memory stays at one batch
    rather than growing to the file (the kernel keeps them in its page cache).
    """

    def __init__(self, source: np.ndarray) -> None:
        self.source = source
        self.inverse_norms: np.ndarray | None = None  # None: rows already unit length
        self.file_backed = drop_resident_pages(source)

    def raw(self, rows: np.ndarray | slice) -> np.ndarray:
        """Rows as stored (a copy, or a view of an in-memory input)."""
        if not self.file_backed:
            return self.source[rows]
        if isinstance(rows, slice):
            rows = np.arange(*rows.indices(self.source.shape[0]))
        out = np.empty((rows.size, self.source.shape[1]), dtype=self.source.dtype)
        for start, stop in _resident_parts(rows, self.source.strides[0]):
            out[start:stop] = self.source[rows[start:stop]]
            drop_resident_pages(self.source)
        return out

    def get(self, rows: np.ndarray) -> np.ndarray:
        out = np.empty((rows.size, self.source.shape[1]), dtype=np.float32)
        for s in range(0, rows.size, GATHER_BATCH):  # float16 → float32 a batch at a time: no second whole copy
            batch = rows[s : s + GATHER_BATCH]
            out[s : s + batch.size] = self.raw(batch)
            if self.inverse_norms is not None:
                out[s : s + batch.size] *= self.inverse_norms[batch, None]
        return out


def _resident_parts(rows: np.ndarray, row_bytes: int) -> list[tuple[int, int]]:
    """Split a gather from a file-backed input into parts that each map at most about RESIDENT_BUDGET bytes.

    Reading a row maps up to MAPPED_PER_FAULT bytes around it; rows closer together than that share them.
    A scattered gather of a few hundred rows would otherwise map most of the file before its pages are
    dropped.
    """
    if rows.size == 0:
        return []
    jump = np.empty(rows.size, dtype=np.int64)
    jump[0] = MAPPED_PER_FAULT
    np.abs(np.diff(rows.astype(np.int64)) * row_bytes, out=jump[1:])
    part = np.cumsum(np.minimum(jump, MAPPED_PER_FAULT) + row_bytes) // RESIDENT_BUDGET
    bounds = [0, *(np.flatnonzero(np.diff(part)) + 1).tolist(), rows.size]
    return list(itertools.pairwise(bounds))


def _prepare(embeddings: object, dim: int | None) -> tuple[np.ndarray, int, int]:
    try:
        x = np.asarray(embeddings)
    except ValueError as exc:  # ragged nested sequences
        raise ValueError(f"embeddings must be an n×d array: {exc}") from exc
    if x.dtype == object:
        raise ValueError("embeddings must be an n×d array of floats (rows of unequal length?)")
    if x.ndim == 1 and x.size == 0:
        x = x.reshape(0, dim or 0)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be two-dimensional (n×d), got shape {x.shape}")
    if x.dtype.kind != "f":
        raise TypeError(f"embeddings must be float16 or float32, got {x.dtype}")
    n, d = x.shape
    if dim is not None and d != dim:
        raise ValueError(f"embeddings have dimension {d}, expected {dim}")
    if n and d == 0:
        raise ValueError("embeddings have dimension 0")
    if x.dtype == np.float64:
        x = x.astype(np.float32)
    return np.ascontiguousarray(x), n, d


def row_norms(rows: np.ndarray) -> np.ndarray:
    """L2 norm of each row, summed in float64 and returned as float32: the one definition of a row's norm for
    the clustering and everything that must agree with it on which rows are valid (:func:`valid_norms`)."""
    rows = rows.astype(np.float32, copy=False)
    with np.errstate(over="ignore", invalid="ignore"):
        return np.sqrt(np.einsum("ij,ij->i", rows, rows, dtype=np.float64)).astype(np.float32)


def valid_norms(norms: np.ndarray) -> np.ndarray:
    """Rows that take part: finite, non-zero norm (NaN/inf rows and zero rows stay singletons)."""
    return np.isfinite(norms) & (norms > 0)


def _norms(x: _Rows) -> np.ndarray:
    n = x.source.shape[0]
    out = np.empty(n, dtype=np.float32)
    for s in range(0, n, GATHER_BATCH):
        out[s : s + GATHER_BATCH] = row_norms(x.raw(slice(s, s + GATHER_BATCH)))
    return out


def _collapse_identical(x: _Rows, rows: np.ndarray, seed: int) -> np.ndarray:
    """For each of ``rows`` (ascending), the first row of ``rows`` with the same bytes (itself if none)."""
    if rows.size < 2:
        return rows.copy()
    word = {2: np.uint16, 4: np.uint32, 8: np.uint64}[x.source.dtype.itemsize]
    weights = np.random.default_rng(seed).integers(0, 2**63, x.source.shape[1], dtype=np.uint64) | np.uint64(1)
    h = np.empty(rows.size, dtype=np.uint64)
    for s in range(0, rows.size, 4096):
        chunk = x.raw(rows[s : s + 4096]).view(word).astype(np.uint64)
        chunk *= weights
        h[s : s + 4096] = chunk.sum(axis=1)
    order = np.argsort(h, kind="stable")  # rows ascending within equal hashes
    hs = h[order]
    del h
    starts = np.ones(rows.size, dtype=bool)
    starts[1:] = hs[1:] != hs[:-1]
    del hs
    head = order[np.maximum.accumulate(np.where(starts, np.arange(rows.size), 0))]
    rep = np.arange(rows.size)
    candidates = np.flatnonzero(~starts)
    for s in range(0, candidates.size, 4096):
        c = candidates[s : s + 4096]
        members, heads = order[c], head[c]
        same = (x.raw(rows[members]).view(word) == x.raw(rows[heads]).view(word)).all(axis=1)
        rep[members[same]] = heads[same]
    return rows[rep]


# ----------------------------------------------------------------------------------------------- the search


def semantic_clusters(
    embeddings: np.ndarray,
    max_distance: float = DEFAULT_MAX_DISTANCE,
    *,
    k: int = DEFAULT_K,
    exclude: np.ndarray | None = None,
    index: str = "auto",
    threads: int | None = None,
    dim: int | None = None,
    nlist: int | None = None,
    nprobe: int = DEFAULT_NPROBE,
    probe_sigmas: float = DEFAULT_PROBE_SIGMAS,
    seed: int = 0,
) -> tuple[np.ndarray, SemanticDedupStats]:
    """Cluster label per row (int64): rows linked by a chain of cosine distances ≤ ``max_distance`` share
    the label, which is the smallest row index in the cluster; and the run's statistics.

    ``embeddings``: n×d float16/float32 (float64 accepted), meant to be L2-normalised (renormalised here).
    ``exclude``: bool per row; those rows, and rows with NaN/inf or zero norm, are singletons.
    ``index``: "auto" (exact up to :data:`FLAT_MAX_ROWS` distinct rows, else "ivf"), "flat", "ivf", "hnsw".
    ``k``: neighbours kept per row and searched list in the approximate modes (see module docstring);
    unused by "flat", which keeps every pair.
    ``threads``: faiss/OpenMP threads for this call (None: faiss's default).
    ``dim``: expected d (ValueError on mismatch). ``nlist``/``nprobe``: ivf cells (default
    :func:`default_nlist`, ≈ 2·sqrt(n)) and cells probed per row; ``probe_sigmas``: ivf probe pruning
    margin (``math.inf``: off). ``seed``: k-means sampling and initialisation, and the identical-row hash.
    """
    started = time.perf_counter()
    if index not in INDEX_TYPES:
        raise ValueError(f"index must be one of {INDEX_TYPES}, got {index!r}")
    if not 0.0 <= float(max_distance) <= 2.0 or math.isnan(float(max_distance)):
        raise ValueError(f"max_distance must be a cosine distance in [0, 2], got {max_distance}")
    if int(k) < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if int(nprobe) < 1:
        raise ValueError(f"nprobe must be at least 1, got {nprobe}")
    if threads is not None and int(threads) < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    x, n, d = _prepare(embeddings, dim)
    if exclude is None:
        excluded = np.zeros(n, dtype=bool)
    else:
        excluded = np.asarray(exclude, dtype=bool)
        if excluded.shape != (n,):
            raise ValueError(f"exclude must have shape ({n},), got {excluded.shape}")

    previous_threads = faiss.omp_get_max_threads()
    if threads is not None:
        faiss.omp_set_num_threads(int(threads))
    try:
        stats = SemanticDedupStats(n=n, dim=d, max_distance=float(max_distance), k=int(k), blas=_BLAS_CORE,
                                   threads=faiss.omp_get_max_threads())  # fmt: skip
        labels = np.arange(n, dtype=np.int64)

        rows = _Rows(x)
        norms = _norms(rows)
        valid = valid_norms(norms)
        stats.invalid = int(n - valid.sum())
        stats.excluded = int((excluded & valid).sum())
        active = np.flatnonzero(valid & ~excluded)
        unit = bool(np.all(np.abs(norms[active] - 1.0) <= 1e-6)) if x.dtype == np.float32 else False
        rows.inverse_norms = None if unit else (1.0 / np.where(valid, norms, 1.0)).astype(np.float32)
        del norms, valid
        rep_row = _collapse_identical(rows, active, seed)  # per active row: its first identical row
        unique = np.unique(rep_row)  # ascending row indices, searched
        stats.identical = int(active.size - unique.size)
        stats.searched = m = int(unique.size)
        chosen = index if index != "auto" else ("flat" if m <= FLAT_MAX_ROWS else "ivf")
        stats.index = chosen
        stats.seconds_prepare = time.perf_counter() - started

        threshold = np.float32(1.0 - float(max_distance))
        edges = _EdgeList(m, compact_at=max(m // 2, _COMPACT_MIN_EDGES))
        if m >= 2:
            if chosen == "flat":
                _flat_pairs(rows, unique, d, threshold, edges, stats)
            elif chosen == "ivf":
                _ivf_pairs(rows, unique, d, threshold, int(k), nlist, int(nprobe), float(probe_sigmas), seed, edges,
                           stats)  # fmt: skip
            else:
                _hnsw_pairs(rows, unique, d, threshold, int(k), edges, stats)
        else:
            stats.index_description = chosen
        stats.edges = edges.emitted

        t = time.perf_counter()
        component = _components(m, *edges.result())  # per searched position: smallest position of its cluster
        position = np.searchsorted(unique, rep_row)
        row_component = component[position]
        labels[active] = unique[row_component]
        sizes = np.bincount(row_component, minlength=m)
        stats.clusters = int(np.count_nonzero(sizes >= 2))
        stats.clustered_rows = int(sizes[sizes >= 2].sum())
        stats.duplicate_rows = stats.clustered_rows - stats.clusters
        stats.seconds_components = time.perf_counter() - t
    finally:
        if threads is not None:
            faiss.omp_set_num_threads(previous_threads)
    stats.seconds = time.perf_counter() - started
    log.info(
        "semantic near-duplicates: %d rows × %d (%d invalid, %d excluded, %d identical), %s, β=%.3g, "
        "%d candidate pairs, %d edges, %d clusters holding %d rows, %.1fs",
        n, d, stats.invalid, stats.excluded, stats.identical, stats.index_description, stats.max_distance,
        stats.candidate_pairs, stats.edges, stats.clusters, stats.clustered_rows, stats.seconds,
    )  # fmt: skip
    if stats.saturated:
        log.info("semantic near-duplicates: %d searches had all k=%d neighbours within β", stats.saturated, k)
    return labels, stats


def _flat_pairs(
    rows: _Rows, unique: np.ndarray, d: int, threshold: np.float32, edges: _EdgeList, stats: SemanticDedupStats
) -> None:
    """Exact: range search of every block against itself and each later block."""
    t = time.perf_counter()
    m = unique.size
    stats.index_description = f"IndexFlatIP range_search, blocks of {FLAT_BLOCK}"
    stats.candidate_pairs = m * (m - 1) // 2
    radius = float(np.nextafter(threshold, np.float32(-np.inf)))
    starts = range(0, m, FLAT_BLOCK)
    for j in starts:
        block = rows.get(unique[j : j + FLAT_BLOCK])
        index = faiss.IndexFlatIP(d)
        index.add(block)
        for i in starts:
            if i > j:
                break
            queries = rows.get(unique[i : i + FLAT_BLOCK]) if i != j else block
            lims, sims, found = index.range_search(queries, radius)
            query = np.repeat(np.arange(queries.shape[0], dtype=np.int64), np.diff(lims.astype(np.int64))) + i
            other = found.astype(np.int64) + j
            keep = (sims >= threshold) & (query < other)
            if keep.any():
                edges.add(query[keep], other[keep])
        del index
    stats.seconds_search = time.perf_counter() - t


def default_nlist(searched: int) -> int:
    """Power of two near 2·sqrt(n) (1M rows: 2048 cells of ~500), at most n / 8.

    Assignment costs n·nlist, k-means ~640·nlist², the join nprobe·n²/nlist similarities; at
    nprobe = 8–16 this keeps the three within a factor of a few of each other, and fewer, larger cells
    give both better GEMM efficiency and better recall for a given nprobe than the sqrt(nprobe·n) optimum
    of the first two alone.
    """
    nlist = 2 ** round(math.log2(max(2.0 * math.sqrt(max(searched, 1)), 1.0)))
    return int(max(1, min(nlist, searched // 8 or 1)))


def _ivf_pairs(
    rows: _Rows,
    unique: np.ndarray,
    d: int,
    threshold: np.float32,
    k: int,
    nlist: int | None,
    nprobe: int,
    probe_sigmas: float,
    seed: int,
    edges: _EdgeList,
    stats: SemanticDedupStats,
) -> None:
    """Approximate: k-means cells; each list's members answer all rows probing it in one BLAS search."""
    m = unique.size
    t = time.perf_counter()
    nlist = default_nlist(m) if nlist is None else int(nlist)
    if not 1 <= nlist <= m:
        raise ValueError(f"nlist must be in [1, {m}] (distinct rows), got {nlist}")
    nprobe = min(nprobe, nlist)
    stats.nlist, stats.nprobe = nlist, nprobe
    stats.index_description = f"IVF{nlist} self-join (spherical k-means), nprobe={nprobe}, k={k}"
    if nlist > 1:
        train_size = min(m, nlist * KMEANS_POINTS_PER_CENTROID)
        sample = np.sort(np.random.default_rng(seed).choice(m, train_size, replace=False))
        kmeans = faiss.Kmeans(
            d, nlist, niter=KMEANS_ITERATIONS, seed=seed, spherical=True, verbose=False,
            max_points_per_centroid=KMEANS_POINTS_PER_CENTROID, min_points_per_centroid=1,
        )  # fmt: skip
        kmeans.train(rows.get(unique[sample]))
        centroids = kmeans.centroids
    else:
        centroids = np.zeros((1, d), dtype=np.float32)
    stats.seconds_train = time.perf_counter() - t

    t = time.perf_counter()
    quantizer = faiss.IndexFlatIP(d)
    quantizer.add(centroids)
    probes = np.empty((m, nprobe), dtype=np.int32)
    scores = np.empty((m, nprobe), dtype=np.float32)
    for s in range(0, m, QUERY_BATCH):
        scores[s : s + QUERY_BATCH], probes[s : s + QUERY_BATCH] = quantizer.search(
            rows.get(unique[s : s + QUERY_BATCH]), nprobe
        )
    member_order, member_bounds = _group_by_cell(probes[:, 0], nlist)
    plausibility = np.zeros((m, nprobe), dtype=np.float32)  # probe gap in units of the pruning margin
    if nprobe > 1:
        _prune_probes(probes, scores, plausibility, centroids, member_order, member_bounds, threshold, probe_sigmas,
                      d, stats)  # fmt: skip
    del scores
    gaps = plausibility.ravel()
    query_order, query_bounds = _group_by_cell(probes.ravel(), nlist)  # positions: query = pos // nprobe
    del probes
    list_sizes = np.diff(member_bounds)
    stats.largest_list = int(list_sizes.max())
    stats.seconds_assign = time.perf_counter() - t

    t = time.perf_counter()
    query_cap = max(1, math.ceil(LIST_QUERY_FACTOR * nprobe * m / nlist))
    for cell in np.flatnonzero(list_sizes):
        members = member_order[member_bounds[cell] : member_bounds[cell + 1]]
        positions = query_order[query_bounds[cell] : query_bounds[cell + 1]]
        cap = max(query_cap, members.size)  # a list's own members always query it
        if positions.size > cap:  # a hub: keep the most plausible probes (members first: their gap is 0)
            keep = np.sort(positions[np.argpartition(gaps[positions], cap - 1)[:cap]])
            stats.capped_probes += positions.size - keep.size
            positions = keep
        queries_all = positions // nprobe
        member_rows = rows.get(unique[members])
        step = max(1, JOIN_BLOCK // members.size)  # bounds the similarity block however large the list
        for s in range(0, queries_all.size, step):
            queries = queries_all[s : s + step]
            _join_block(rows.get(unique[queries]), member_rows, queries, members, threshold, k, edges, stats)
    stats.seconds_search = time.perf_counter() - t


def _group_by_cell(cells: np.ndarray, nlist: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions of ``cells`` (values in [-1, nlist)) grouped by value, ascending within each, and per cell
    c in [0, nlist] the start of its group (``bounds[c]`` = number of values < c; pruned -1 come first).

    The same as a stable argsort followed by a searchsorted, but a counting sort done a chunk at a time:
    the order is int32 when it fits (4 bytes per position instead of argsort's 8, with no int64 copy).
    """
    counts = np.zeros(nlist + 1, dtype=np.int64)  # per value + 1
    for s in range(0, cells.size, SORT_CHUNK):
        counts += np.bincount(cells[s : s + SORT_CHUNK] + 1, minlength=nlist + 1)
    starts = np.concatenate(([0], np.cumsum(counts)))
    order = np.empty(cells.size, dtype=np.int32 if cells.size < 2**31 else np.int64)
    free = starts[:-1].copy()  # next slot of each value
    for s in range(0, cells.size, SORT_CHUNK):
        chunk = cells[s : s + SORT_CHUNK]
        local = np.argsort(chunk, kind="stable")
        keys = chunk[local] + 1
        chunk_counts = np.bincount(keys, minlength=nlist + 1)
        first_in_chunk = np.cumsum(chunk_counts) - chunk_counts
        order[free[keys] + np.arange(keys.size) - first_in_chunk[keys]] = local + s
        free += chunk_counts
    return order, starts[1:]


def _prune_probes(
    probes: np.ndarray,
    scores: np.ndarray,
    plausibility: np.ndarray,
    centroids: np.ndarray,
    member_order: np.ndarray,
    member_bounds: np.ndarray,
    threshold: np.float32,
    probe_sigmas: float,
    d: int,
    stats: SemanticDedupStats,
) -> None:
    """Drop (set to -1) probes of cells that cannot plausibly hold a near-duplicate's nearest centroid.

    For y at cosine c = 1 − δ ≥ 1 − β from x, y = c·x + s·z (s = sqrt(1 − c²), z a unit vector ⊥ x), y's
    score for cell L beats its score for x's best cell 1 only if c·(score_x(1) − score_x(L)) ≤ s·z·(c_L − c_1).
    With z isotropic in an effective dimension d', z·(c_L − c_1) has standard deviation ‖c_L − c_1‖ / sqrt(d'),
    so probes whose gap exceeds ``probe_sigmas`` such deviations (at δ = β, the worst case) are dropped.
    d' = min(d − 1, :data:`PROBE_EFFECTIVE_DIM`): CLIP embeddings vary in a few hundred directions at most.
    Without this, on data with hub centroids (equally far from most rows) every row probes the hubs and
    the join cost explodes; on structureless data gaps are small and nothing is dropped.
    """
    cos_beta = float(threshold)
    sin_beta = math.sqrt(max(0.0, 1.0 - cos_beta * cos_beta))
    margin = max(1e-9, sin_beta / (max(cos_beta, 1e-3) * math.sqrt(max(1, min(d - 1, PROBE_EFFECTIVE_DIM)))))
    prune = math.isfinite(probe_sigmas) and cos_beta > 0.05
    for cell in np.flatnonzero(np.diff(member_bounds)):
        rows = member_order[member_bounds[cell] : member_bounds[cell + 1]]
        similarity = centroids @ centroids[cell]  # unit centroids: ‖c_L − c_1‖² = 2 − 2 c_L·c_1
        others = probes[rows, 1:]
        spread = np.sqrt(np.maximum(2.0 - 2.0 * similarity[others], 1e-12))
        sigmas = (scores[rows, :1] - scores[rows, 1:]) / (margin * spread)
        plausibility[rows, 1:] = sigmas
        if prune:
            drop = sigmas > probe_sigmas
            if drop.any():
                others[drop] = -1
                probes[rows, 1:] = others
                stats.pruned_probes += int(drop.sum())


def _join_block(
    query_rows: np.ndarray,
    member_rows: np.ndarray,
    queries: np.ndarray,
    members: np.ndarray,
    threshold: np.float32,
    k: int,
    edges: _EdgeList,
    stats: SemanticDedupStats,
) -> None:
    """Edges from each query to its (at most k) most similar members within the threshold, itself excluded.

    The same edges as a k-NN search followed by the threshold, but one GEMM and a comparison: most queries
    have no hit at all, and only those with more than k hits need a selection.
    """
    sims = query_rows @ member_rows.T
    stats.candidate_pairs += sims.size
    q, c = np.nonzero(sims >= threshold)
    not_self = queries[q] != members[c]
    q, c = q[not_self], c[not_self]
    if q.size == 0:
        return
    counts = np.bincount(q, minlength=queries.size)
    over = np.flatnonzero(counts > k)
    if over.size:
        stats.saturated += int(over.size)
        within = ~np.isin(q, over)
        q, c = q[within], c[within]
        sub = sims[over]
        sub[queries[over, None] == members[None, :]] = -np.inf  # never itself
        best = np.argpartition(-sub, k - 1, axis=1)[:, :k]  # the k most similar: all within the threshold
        q = np.concatenate([q, np.repeat(over, k)])
        c = np.concatenate([c, best.ravel()])
    edges.add(queries[q], members[c])


def _hnsw_pairs(
    rows: _Rows, unique: np.ndarray, d: int, threshold: np.float32, k: int, edges: _EdgeList,
    stats: SemanticDedupStats,
) -> None:  # fmt: skip
    """Approximate: k + 1 nearest neighbours of every row in an HNSW graph."""
    m = unique.size
    t = time.perf_counter()
    index = faiss.IndexHNSWFlat(d, HNSW_M, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    for s in range(0, m, QUERY_BATCH):
        index.add(rows.get(unique[s : s + QUERY_BATCH]))
    stats.seconds_train = time.perf_counter() - t
    t = time.perf_counter()
    kk = min(k + 1, m)
    index.hnsw.efSearch = max(HNSW_EF_SEARCH, kk)
    stats.index_description = (f"IndexHNSWFlat M={HNSW_M} efConstruction={HNSW_EF_CONSTRUCTION} "
                               f"efSearch={index.hnsw.efSearch}, k={k}")  # fmt: skip
    for s in range(0, m, QUERY_BATCH):
        queries = np.arange(s, min(s + QUERY_BATCH, m), dtype=np.int64)
        sims, found = index.search(rows.get(unique[queries]), kk)
        other = found.astype(np.int64)
        hit = (sims >= threshold) & (other >= 0) & (other != queries[:, None])
        stats.saturated += int(np.count_nonzero(sims[:, -1] >= threshold)) if kk < m else 0
        if hit.any():
            q, c = np.nonzero(hit)
            edges.add(queries[q], other[q, c])
    stats.seconds_search = time.perf_counter() - t


def cluster_semantic_duplicates(
    embeddings: np.ndarray, max_distance: float = DEFAULT_MAX_DISTANCE, exclude: np.ndarray | None = None, **kwargs
) -> np.ndarray:
    """:func:`semantic_clusters` without the statistics."""
    return semantic_clusters(embeddings, max_distance, exclude=exclude, **kwargs)[0]


def _pairs_bruteforce(
    embeddings: np.ndarray, max_distance: float, exclude: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """All row pairs i < j (both valid, neither excluded) at cosine distance ≤ ``max_distance``, in float64.
    O(n²): tests only."""
    x = np.asarray(embeddings, dtype=np.float64)
    n = x.shape[0]
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        norms = np.sqrt((x * x).sum(axis=1))
        ok = np.isfinite(norms) & (norms > 0)
        if exclude is not None:
            ok &= ~np.asarray(exclude, dtype=bool)
        x = np.where(ok[:, None], x / np.where(ok, norms, 1.0)[:, None], 0.0)
    return _close_pairs(n, ok, lambda start, stop: x[start:stop] @ x.T >= 1.0 - max_distance)
