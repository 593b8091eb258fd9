"""Semantic (CLIP-embedding) near-duplicate clustering: exact equivalence with brute force, approximate recall,
exclusion, invalid rows, float16, identical rows, determinism."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from danqing_assets.curation.dedup.near_duplicates import _components, pick_representatives
from danqing_assets.curation.dedup.semantic import (
    DEFAULT_MAX_DISTANCE,
    FLAT_MAX_ROWS,
    _pairs_bruteforce,
    cluster_semantic_duplicates,
    default_nlist,
    faiss,
    semantic_clusters,
)
from danqing_assets.curation.embed.vector_file import VectorFile, drop_resident_pages
from danqing_assets.settings import Settings

BETA = DEFAULT_MAX_DISTANCE


# --- helpers -------------------------------------------------------------------------------------


def unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def at_distance(rng: np.random.Generator, seeds: np.ndarray, distances: np.ndarray) -> np.ndarray:
    """Unit vectors at exactly the given cosine distances from the (unit) seeds, in random directions."""
    z = rng.standard_normal(seeds.shape)
    z -= (z * seeds).sum(axis=1, keepdims=True) * seeds
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    c = (1.0 - distances)[:, None]
    return c * seeds + np.sqrt(1.0 - c * c) * z


def planted(
    n: int, d: int, seed: int = 0, share: float = 0.1, below: tuple[float, float] = (0.0, 0.09),
    above: tuple[float, float] = (0.11, 0.2),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Random unit rows (float64); groups of a seed and 1–4 copies at cosine distances in ``below``
    (some copies of copies: chains), and as many hard negatives at distances in ``above`` from a seed.
    Returns the rows and the planted (copy, seed) pairs."""
    rng = np.random.default_rng(seed)
    x = unit(rng, n, d)
    order = rng.permutation(n)
    groups = int(n * share / 3.5)
    seeds, rest = order[:groups], order[groups:]
    sizes = rng.integers(1, 5, groups)
    copies = rest[: sizes.sum()]
    copy_seed = np.repeat(seeds, sizes)
    chained = rng.random(copies.size) < 0.2  # a copy of the previous copy of the same seed
    source = copy_seed.copy()
    same_group = np.r_[False, copy_seed[1:] == copy_seed[:-1]]
    source[chained & same_group] = np.r_[-1, copies[:-1]][chained & same_group]
    for c, s in zip(copies, source):  # sequential so chains copy finished rows
        x[c] = at_distance(rng, x[s][None], rng.uniform(*below, 1))[0]
    negatives = rest[sizes.sum() : sizes.sum() + groups]
    x[negatives] = at_distance(rng, x[seeds[: negatives.size]], rng.uniform(*above, negatives.size))
    return x, copies, source


def reference_labels(x: np.ndarray, max_distance: float = BETA, exclude: np.ndarray | None = None) -> np.ndarray:
    """Components of the brute-force graph (float64), labelled by their smallest row."""
    a, b = _pairs_bruteforce(x, max_distance, exclude)
    return _components(x.shape[0], a, b)


def assert_margin(x: np.ndarray, max_distance: float = BETA, margin: float = 1e-4) -> None:
    """No pair sits so close to the threshold that float32 rounding could decide it."""
    lo, _ = _pairs_bruteforce(x, max_distance + margin)
    hi, _ = _pairs_bruteforce(x, max_distance - margin)
    assert lo.size == hi.size, "a pair lies within the rounding margin of the threshold: pick another seed"


def all_clusters_are_chains_of_true_edges(x: np.ndarray, labels: np.ndarray, max_distance: float = BETA) -> bool:
    """No false merges: inside every cluster, the pairs within ``max_distance`` connect all members."""
    order = np.argsort(labels, kind="stable")
    bounds = np.flatnonzero(np.r_[True, labels[order][1:] != labels[order][:-1], True])
    for start, stop in zip(bounds[:-1], bounds[1:]):
        if stop - start < 2:
            continue
        members = x[order[start:stop]]
        members = members / np.linalg.norm(members, axis=1, keepdims=True)
        i, j = np.nonzero(np.triu(members @ members.T >= 1.0 - max_distance - 1e-6, 1))
        if np.unique(_components(stop - start, i, j)).size != 1:
            return False
    return True


def is_refinement(fine: np.ndarray, coarse: np.ndarray) -> bool:
    """Every cluster of ``fine`` lies inside one cluster of ``coarse``."""
    first_coarse = np.full(fine.size, -1)
    first_coarse[fine] = coarse  # any member's coarse label (last write wins)
    return bool(np.all(coarse == first_coarse[fine]))


# --- exact ---------------------------------------------------------------------------------------


def test_exact_mode_equals_brute_force() -> None:
    x, copies, source = planted(3000, 64, seed=1)
    assert_margin(x)
    x32 = x.astype(np.float32)
    labels, stats = semantic_clusters(x32)
    assert stats.index == "flat" and stats.searched == 3000 <= FLAT_MAX_ROWS
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(labels, reference_labels(x))
    assert np.all(labels[copies] == labels[source])  # every planted copy joined its source
    assert stats.clusters >= 80 and stats.edges == _pairs_bruteforce(x, BETA)[0].size
    assert stats.duplicate_rows == 3000 - np.unique(labels).size
    assert set(stats.as_dict()) >= {"n", "index", "edges", "clusters", "seconds_search", "seconds"}


def test_hard_negatives_above_beta_stay_apart() -> None:
    rng = np.random.default_rng(2)
    seeds = unit(rng, 200, 256)
    near = at_distance(rng, seeds, rng.uniform(0.0, 0.095, 200))
    far = at_distance(rng, seeds, rng.uniform(0.105, 0.3, 200))
    x = np.concatenate([seeds, near, far]).astype(np.float32)
    labels, _ = semantic_clusters(x)
    assert np.all(labels[200:400] == np.arange(200))
    assert np.all(labels[400:] == np.arange(400, 600))


@pytest.mark.parametrize("beta", [0.05, 0.2])
def test_other_thresholds_equal_brute_force(beta: float) -> None:
    x, _, _ = planted(1500, 32, seed=3, below=(0.0, 0.15), above=(0.16, 0.3))
    assert_margin(x, beta)
    labels, _ = semantic_clusters(x.astype(np.float32), beta, index="flat")
    np.testing.assert_array_equal(labels, reference_labels(x, beta))


def test_blocks_of_the_upper_triangle_cover_every_pair(monkeypatch: pytest.MonkeyPatch) -> None:
    import danqing_assets.curation.dedup.semantic as semantic

    monkeypatch.setattr(semantic, "FLAT_BLOCK", 97)  # many blocks, a ragged last one
    x, _, _ = planted(1000, 32, seed=4)
    assert_margin(x)
    labels, _ = semantic_clusters(x.astype(np.float32), index="flat")
    np.testing.assert_array_equal(labels, reference_labels(x))


# --- approximate ---------------------------------------------------------------------------------


def test_ivf_finds_99_percent_of_planted_pairs_and_never_merges_wrongly() -> None:
    x, copies, source = planted(50_000, 128, seed=5, share=0.06)
    labels, stats = semantic_clusters(x.astype(np.float32), index="ivf")
    assert stats.index == "ivf" and stats.nlist == default_nlist(stats.searched) == 512 and stats.nprobe == 16
    assert stats.candidate_pairs < 50_000 * 49_999 / 2 / 10  # a tenth of the exact self-join, or less
    recall = np.mean(labels[copies] == labels[source])
    assert recall >= 0.99, recall
    assert all_clusters_are_chains_of_true_edges(x, labels)


def test_auto_chooses_the_approximate_index_past_the_flat_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    import danqing_assets.curation.dedup.semantic as semantic

    monkeypatch.setattr(semantic, "FLAT_MAX_ROWS", 999)
    x, copies, source = planted(4000, 64, seed=6)
    labels, stats = semantic_clusters(x.astype(np.float32))
    assert stats.index == "ivf" and stats.nlist == default_nlist(4000) == 128
    assert np.mean(labels[copies] == labels[source]) >= 0.99


def test_probe_pruning_skips_hub_cells_without_losing_pairs() -> None:
    # rows = shared direction + one of 100 topic directions + noise: every centroid is equally far from the
    # rows of other topics, so without pruning all rows probe the same "hub" cells
    rng = np.random.default_rng(17)
    n, d = 20_000, 256
    shared, topics = unit(rng, 1, d)[0], unit(rng, 100, d)
    x = 0.4 * shared + 0.6 * topics[rng.integers(0, 100, n)] + np.sqrt(0.48) * unit(rng, n, d)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    seeds = rng.choice(n, 600, replace=False)
    copies = np.setdiff1d(np.arange(n), seeds)[rng.choice(n - 600, 600, replace=False)]
    x[copies] = at_distance(rng, x[seeds], rng.uniform(0.0, 0.098, 600))
    x32 = x.astype(np.float32)
    pruned, stats = semantic_clusters(x32, index="ivf", nlist=128)
    full, full_stats = semantic_clusters(x32, index="ivf", nlist=128, probe_sigmas=np.inf)
    assert full_stats.pruned_probes == 0 and stats.pruned_probes > 0.8 * n * (stats.nprobe - 1)
    assert stats.candidate_pairs < full_stats.candidate_pairs / 4
    assert np.mean(pruned[copies] == pruned[seeds]) == np.mean(full[copies] == full[seeds]) == 1.0


def test_hnsw_mode_runs_and_is_a_refinement() -> None:
    x, copies, source = planted(3000, 32, seed=7)
    assert_margin(x)
    labels, stats = semantic_clusters(x.astype(np.float32), index="hnsw", threads=1)
    assert stats.index == "hnsw"
    assert is_refinement(labels, reference_labels(x))
    assert np.mean(labels[copies] == labels[source]) >= 0.98


def test_a_dense_cloud_beyond_k_neighbours_is_still_one_cluster() -> None:
    rng = np.random.default_rng(8)
    centre = unit(rng, 1, 64)
    cloud = at_distance(rng, np.repeat(centre, 300, axis=0), rng.uniform(0.0, 0.02, 300))
    x = np.concatenate([unit(rng, 3000, 64), cloud]).astype(np.float32)
    for index in ("ivf", "flat"):
        labels, stats = semantic_clusters(x, index=index, k=4, nlist=32)
        assert np.all(labels[3000:] == 3000), index
        assert np.all(labels[:3000] == np.arange(3000))
        if index == "ivf":
            assert stats.saturated >= 300  # every cloud row had more than k near-duplicates
            assert stats.edges <= 300 * stats.nprobe * 4


# --- inputs --------------------------------------------------------------------------------------


def test_excluded_rows_are_singletons_and_change_nothing_else() -> None:
    x, copies, source = planted(2000, 64, seed=10)
    assert_margin(x)
    exclude = np.zeros(2000, dtype=bool)
    exclude[source[:50]] = True
    exclude[np.random.default_rng(0).choice(2000, 100, replace=False)] = True
    for index in ("flat", "ivf"):
        labels, stats = semantic_clusters(x.astype(np.float32), exclude=exclude, index=index)
        assert np.all(labels[exclude] == np.flatnonzero(exclude))
        assert stats.excluded == exclude.sum()
        reference = reference_labels(x, exclude=exclude)
        if index == "flat":
            np.testing.assert_array_equal(labels, reference)
        else:
            assert is_refinement(labels, reference)
    with pytest.raises(ValueError, match="exclude must have shape"):
        semantic_clusters(x.astype(np.float32), exclude=exclude[:-1])


def test_float16_input_matches_its_own_brute_force() -> None:
    x, copies, source = planted(3000, 128, seed=9, below=(0.0, 0.08), above=(0.12, 0.2))
    x16 = x.astype(np.float16)  # rows no longer exactly unit length: renormalised inside
    widened = x16.astype(np.float64)
    assert_margin(widened / np.linalg.norm(widened, axis=1, keepdims=True))
    labels, stats = semantic_clusters(x16)
    assert stats.index == "flat" and stats.identical == 0
    np.testing.assert_array_equal(labels, reference_labels(widened))
    assert np.all(labels[copies] == labels[source])
    ivf, _ = semantic_clusters(x16, index="ivf")
    assert is_refinement(ivf, labels) and np.mean(ivf[copies] == ivf[source]) >= 0.99


def test_unnormalised_and_float64_rows_are_compared_by_cosine() -> None:
    x, _, _ = planted(1000, 32, seed=11)
    assert_margin(x)
    scaled = x * np.random.default_rng(0).uniform(0.1, 10.0, (1000, 1))
    np.testing.assert_array_equal(semantic_clusters(scaled)[0], reference_labels(x))
    np.testing.assert_array_equal(semantic_clusters(scaled.astype(np.float32))[0], reference_labels(x))


def test_nan_inf_and_zero_rows_are_excluded_and_counted() -> None:
    x, _, _ = planted(500, 16, seed=12)
    x = x.astype(np.float32)
    x[3, 5] = np.nan
    x[7] = np.inf
    x[11] = 0.0
    x[12] = x[13] = x[14]  # identical rows still merge
    bad = np.zeros(500, dtype=bool)
    bad[[3, 7, 11]] = True
    labels, stats = semantic_clusters(x)
    assert stats.invalid == 3 and stats.excluded == 0
    assert np.all(labels[[3, 7, 11]] == [3, 7, 11])
    assert labels[13] == labels[14] == labels[12] <= 12
    np.testing.assert_array_equal(labels, reference_labels(x.astype(np.float64), exclude=bad))
    everything_nan = np.full((4, 8), np.nan, dtype=np.float32)
    labels, stats = semantic_clusters(everything_nan)
    assert stats.invalid == 4 and np.array_equal(labels, np.arange(4))


def test_identical_rows_are_collapsed_before_the_search() -> None:
    rng = np.random.default_rng(13)
    base = unit(rng, 200, 64).astype(np.float32)
    x = np.concatenate([base, np.repeat(base[:1], 5000, axis=0), base[5:10]])
    for index in ("flat", "ivf", "hnsw"):
        labels, stats = semantic_clusters(x, index=index, k=2)
        assert stats.identical == 5005 and stats.searched == 200, index
        assert np.all(labels[200:5200] == 0) and np.all(labels[5200:] == np.arange(5, 10))
        assert stats.clusters == 6 and stats.clustered_rows == 5011


def test_empty_single_and_malformed_inputs() -> None:
    labels, stats = semantic_clusters(np.empty((0, 768), dtype=np.float32))
    assert labels.dtype == np.int64 and labels.size == 0 and stats.n == 0 and stats.clusters == 0
    assert semantic_clusters(np.empty(0, dtype=np.float32))[0].size == 0
    labels, stats = semantic_clusters(np.ones((1, 4), dtype=np.float16))
    assert labels.tolist() == [0] and stats.searched == 1 and stats.edges == 0
    with pytest.raises(ValueError, match="dimension 4, expected 768"):
        semantic_clusters(np.ones((3, 4), dtype=np.float32), dim=768)
    with pytest.raises(ValueError, match="two-dimensional"):
        semantic_clusters(np.ones(4, dtype=np.float32))
    with pytest.raises(ValueError, match="n×d"):
        semantic_clusters([[1.0, 0.0], [1.0]])
    with pytest.raises(TypeError, match="float16 or float32"):
        semantic_clusters(np.ones((3, 4), dtype=np.int8))
    with pytest.raises(ValueError, match="index must be one of"):
        semantic_clusters(np.ones((3, 4), dtype=np.float32), index="lsh")
    with pytest.raises(ValueError, match="max_distance"):
        semantic_clusters(np.ones((3, 4), dtype=np.float32), -0.1)
    with pytest.raises(ValueError, match="k must be"):
        semantic_clusters(np.ones((3, 4), dtype=np.float32), k=0)
    with pytest.raises(ValueError, match="nlist"):
        semantic_clusters(unit(np.random.default_rng(0), 10, 4).astype(np.float32), index="ivf", nlist=11)


# --- file-backed input and bookkeeping -----------------------------------------------------------


def mapped_bytes(array: np.ndarray) -> int:
    """Bytes of ``array`` mapped into this process right now: its pages present in /proc/self/pagemap."""
    page = os.sysconf("SC_PAGE_SIZE")
    first, last = array.ctypes.data // page, (array.ctypes.data + array.nbytes - 1) // page
    with open("/proc/self/pagemap", "rb", buffering=0) as f:
        entries = np.frombuffer(os.pread(f.fileno(), (last - first + 1) * 8, first * 8), dtype=np.uint64)
    return int(np.count_nonzero(entries >> np.uint64(63))) * page


def test_a_file_backed_input_gives_the_same_labels_and_its_pages_are_dropped_batch_by_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # fmt: skip
    from danqing_assets.curation.dedup import semantic

    x, copies, source = planted(16_000, 1024, seed=18, share=0.05)
    x16 = x.astype(np.float16)  # 32 MB: many times the budget below
    monkeypatch.setattr(semantic, "RESIDENT_BUDGET", 2**20)
    in_memory = {index: semantic_clusters(x16, index=index)[0] for index in ("flat", "ivf")}
    with VectorFile(1024, directory=tmp_path) as vectors:
        for s in range(0, x16.shape[0], 3000):
            vectors.append(x16[s : s + 3000])
        on_disk = vectors.array()
        mapped_at_drops = []

        def measured_drop(array: np.ndarray) -> bool:  # the real drop, after noting what was mapped
            mapped_at_drops.append(mapped_bytes(array))
            return drop_resident_pages(array)

        monkeypatch.setattr(semantic, "drop_resident_pages", measured_drop)
        for index in ("flat", "ivf"):
            mapped_at_drops.clear()
            labels, _ = semantic_clusters(on_disk, index=index)
            np.testing.assert_array_equal(labels, in_memory[index])
            assert np.mean(labels[copies] == labels[source]) >= 0.99
            # between two drops no more than the budget plus what the last row's fault and the part's far end
            # may map, never the file
            assert len(mapped_at_drops) > 10 and max(mapped_at_drops) <= 2**20 + 2 * semantic.MAPPED_PER_FAULT
            assert mapped_bytes(on_disk) == 0, index
        del on_disk


def test_probe_grouping_equals_a_stable_argsort_across_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    from danqing_assets.curation.dedup import semantic

    monkeypatch.setattr(semantic, "SORT_CHUNK", 1000)
    cells = np.random.default_rng(19).integers(-1, 50, (7_777, 4)).astype(np.int32)
    for values in (cells.ravel(), cells[:, 0]):  # all probes (pruned -1 first) and a strided column
        order, bounds = semantic._group_by_cell(values, 50)
        expected = np.argsort(values, kind="stable")
        assert order.dtype == np.int32
        np.testing.assert_array_equal(order, expected)
        np.testing.assert_array_equal(bounds, np.searchsorted(values[expected], np.arange(51)))


# --- run-to-run ----------------------------------------------------------------------------------


def test_output_is_deterministic() -> None:
    x, _, _ = planted(20_000, 64, seed=14)
    x32 = x.astype(np.float32)
    for index in ("ivf", "flat"):
        first, stats_first = semantic_clusters(x32, index=index)
        second, stats_second = semantic_clusters(x32.copy(), index=index)
        np.testing.assert_array_equal(first, second)
        assert stats_first.edges == stats_second.edges and stats_first.candidate_pairs == stats_second.candidate_pairs


def test_threads_apply_to_the_call_only() -> None:
    before = faiss.omp_get_max_threads()
    x, _, _ = planted(2000, 32, seed=15)
    labels, stats = semantic_clusters(x.astype(np.float32), threads=1, index="ivf")
    assert stats.threads == 1 and faiss.omp_get_max_threads() == before
    np.testing.assert_array_equal(labels, semantic_clusters(x.astype(np.float32), threads=1, index="ivf")[0])
    with pytest.raises(ValueError, match="threads"):
        semantic_clusters(x.astype(np.float32), threads=0)


def test_labels_feed_pick_representatives_and_defaults_match_settings() -> None:
    x, copies, source = planted(1000, 32, seed=16)
    labels = cluster_semantic_duplicates(x.astype(np.float32))
    keep = pick_representatives(labels, area=np.arange(1000), snapshot=["CC-MAIN-2026-08"] * 1000, uid=np.arange(1000))
    assert keep.sum() == np.unique(labels).size
    assert Settings().semantic_max_distance == DEFAULT_MAX_DISTANCE
