"""Cross-snapshot semantic matching against a file-backed index in segments equals the in-memory exact clustering."""

import numpy as np

from danqing_assets.curation.dedup.cross_snapshot import BLOCK, SEMANTIC_DUPLICATE, match_against_index
from danqing_assets.curation.dedup.semantic import semantic_clusters
from danqing_assets.curation.embed.vector_file import VectorFile

DIM, BETA = 32, 0.1
STEP = np.arccos(1 - 0.07)  # one step along an arc: cosine distance 0.07 (≤ β); two steps: 0.27 (> β)


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=-1, keepdims=True)


def arc(rng: np.random.Generator, steps: int) -> np.ndarray:
    """Unit vectors one STEP apart along a great circle: consecutive ones are near-duplicates, others are not."""
    a, b = np.linalg.qr(rng.normal(size=(DIM, 2)))[0].T
    return np.array([np.cos(i * STEP) * a + np.sin(i * STEP) * b for i in range(steps)])


def planted(rng: np.random.Generator, m: int, n: int) -> tuple[np.ndarray, np.ndarray, dict[int, int]]:
    """Random index and new rows (random pairs are never within β at 32-d), with near-duplicates planted:
    chains through index rows, through new rows, across segment and block edges; and the expected match."""
    index, new = unit(rng.normal(size=(m, DIM))), unit(rng.normal(size=(n, DIM)))
    chain = arc(rng, 4)  # index 20 — index 4500 — index 8000 — new 6: two index–index steps to the smallest row
    index[[20, 4500, 8000]], new[6] = chain[:3], chain[3]
    index[5000] = unit(index[10] + 0.01 * rng.normal(size=DIM))  # new 0 is near both: the smaller one is named
    new[0] = unit(index[5000] + 0.01 * rng.normal(size=DIM))
    hop = arc(rng, 3)  # index 4100 — new 3 — new 2 (new 2 reaches the index only through new 3)
    index[4100], new[3], new[2] = hop
    new[1] = unit(index[m - 1] + 0.01 * rng.normal(size=DIM))  # the last row of the last segment
    new[4] = np.nan  # no embedding: never matches
    index[7] = np.nan
    new[5] = index[BLOCK]  # an exact copy, first row of the index's second block
    new[n - 1] = unit(new[BLOCK - 1] + 0.01 * rng.normal(size=DIM))  # new–new across blocks, no index row
    expected = {6: 20, 0: 10, 3: 4100, 2: 4100, 1: m - 1, 5: BLOCK}
    return index, new, expected


def in_memory_reference(index: np.ndarray, new: np.ndarray) -> np.ndarray:
    """The whole index and snapshot as one float32 array, clustered exactly: per new row the index row it
    duplicates (the smallest row of its cluster when that is an index row), else -1."""
    vectors = np.concatenate([index, new]).astype(np.float32)
    labels, _ = semantic_clusters(vectors, BETA, exclude=~np.isfinite(vectors).all(axis=1), index="flat")
    labels = labels[len(index):]
    return np.where(labels < len(index), labels, -1)


def test_streamed_matching_over_file_backed_segments_equals_the_in_memory_clustering(tmp_path):
    rng = np.random.default_rng(0)
    sizes, n = [3000, 4000, 2000], 5000  # the index spans 3 segments and 3 blocks, the snapshot 2 blocks
    index, new, expected = planted(rng, sum(sizes), n)
    index, new = index.astype(np.float16), new.astype(np.float16)  # as stored
    bounds = np.cumsum([0, *sizes])
    files = [VectorFile(DIM, directory=tmp_path) for _ in sizes]
    try:
        for file, start, stop in zip(files, bounds[:-1], bounds[1:]):
            file.append(index[start:stop])
        segments = [file.array() for file in files]
        assert all(not s.flags.writeable for s in segments)  # read-only memory maps, as in the asset
        hashes = rng.integers(0, 2**63, sum(sizes) + n, dtype=np.int64).view(np.uint64)  # no pHash matches
        matches = match_against_index(hashes[: sum(sizes)], hashes[sum(sizes):], phash_max_distance=4,
                                      index_vectors=segments, new_vectors=new, semantic_max_distance=BETA)
    finally:
        for file in files:
            file.close()

    reference = in_memory_reference(index, new)
    assert matches.duplicate_of.tolist() == reference.tolist()
    assert {i: int(matches.duplicate_of[i]) for i in np.flatnonzero(~matches.kept)} == expected
    assert [matches.reason[i] for i in np.flatnonzero(~matches.kept)] == [SEMANTIC_DUPLICATE] * 6
    assert matches.kept[[4, n - 1, BLOCK - 1]].all()  # no embedding; new–new near-duplicates without an index row


def test_a_single_in_memory_array_is_one_segment():
    rng = np.random.default_rng(1)
    index, new, expected = planted(rng, 9000, 5000)
    hashes = rng.integers(0, 2**63, 14000, dtype=np.int64).view(np.uint64)
    matches = match_against_index(hashes[:9000], hashes[9000:], phash_max_distance=4, index_vectors=index,
                                  new_vectors=new, semantic_max_distance=BETA)
    assert matches.duplicate_of.tolist() == in_memory_reference(index, new).tolist()
    assert {i: int(matches.duplicate_of[i]) for i in np.flatnonzero(~matches.kept)} == expected
