"""Cross-snapshot dedup: the matching unit, and the cumulative ``dedup_index`` asset on both sample snapshots."""

import dagster as dg
import numpy as np
import polars as pl

from danqing_assets.curation.dedup.cross_snapshot import (PHASH_DUPLICATE, SAME_PAIR, SEMANTIC_DUPLICATE,
                                                          match_against_index)
from danqing_assets.resources.storage import LocalObjectStore
from danqing_assets.resources.tables import load_manifest, read_table
from danqing_assets_tests.curated_sample import NEW, OLD, environment, materialise, metadata_by_asset



def photo_hashes(n: int, seed: int) -> np.ndarray:
    """pHash-like values: 32 of 64 bits set, as real photographs give (degenerate hashes never match)."""
    rng = np.random.default_rng(seed)
    out = np.zeros(n, dtype=np.uint64)
    for i in range(n):
        for bit in rng.choice(64, 32, replace=False):
            out[i] |= np.uint64(1) << np.uint64(bit)
    return out


def flip(h: np.uint64, *bits: int) -> np.uint64:
    for bit in bits:
        h ^= np.uint64(1) << np.uint64(bit)
    return h


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def test_a_new_pair_near_an_index_pair_is_matched_to_that_pair():
    index = photo_hashes(50, seed=1)
    new = np.concatenate([[flip(index[7], 3, 40), flip(index[30], 1, 2, 5, 9, 11, 20)], photo_hashes(5, seed=2)])
    matches = match_against_index(index, new, phash_max_distance=4)
    assert matches.duplicate_of.tolist() == [7, -1, -1, -1, -1, -1, -1]  # 6 bits apart is a different image
    assert matches.reason[:2] == [PHASH_DUPLICATE, None]
    assert matches.kept.tolist() == [False, True, True, True, True, True, True]


def test_semantic_matching_uses_the_embeddings_and_can_be_switched_off():
    rng = np.random.default_rng(0)
    index_vectors = unit(rng.normal(size=(40, 64)))
    near = unit(index_vectors[[12]] + 0.05 * unit(rng.normal(size=(1, 64))))  # cosine distance ~0.001
    far = unit(rng.normal(size=(1, 64)))
    missing = np.full((1, 64), np.nan, dtype=np.float32)
    new_vectors = np.concatenate([near, far, missing])
    index_hashes, new_hashes = photo_hashes(40, seed=3), photo_hashes(3, seed=4)
    on = match_against_index(index_hashes, new_hashes, phash_max_distance=4, index_vectors=index_vectors,
                             new_vectors=new_vectors, semantic_max_distance=0.1)
    assert on.duplicate_of.tolist() == [12, -1, -1] and on.reason == [SEMANTIC_DUPLICATE, None, None]
    off = match_against_index(index_hashes, new_hashes, phash_max_distance=4, index_vectors=index_vectors,
                              new_vectors=new_vectors, semantic_max_distance=-1)
    assert off.kept.all()


def test_an_empty_index_or_snapshot_matches_nothing():
    assert match_against_index(np.zeros(0, np.uint64), photo_hashes(3, 5), phash_max_distance=4).kept.all()
    assert match_against_index(photo_hashes(3, 5), np.zeros(0, np.uint64), phash_max_distance=4).duplicate_of.size == 0


def test_degenerate_hashes_never_match_across_snapshots():
    blank = np.array([0, 0x8000000000000000], dtype=np.uint64)
    assert match_against_index(blank, blank, phash_max_distance=4).kept.all()


def own(root, snapshot):
    from danqing_assets.assets.dedup_index import own_rows
    from danqing_assets.resources.storage import LocalObjectStore

    store = LocalObjectStore(root)
    return own_rows(store, load_manifest(store, "dedup_index", snapshot))


def test_an_image_in_both_snapshots_is_kept_only_in_the_earlier_one_whichever_comes_first(curated_sample, tmp_path):
    from danqing_assets.partitions import register_snapshots

    # The session's sample was curated later snapshot first (see curated_sample.py).
    steps = dict(curated_sample.steps)
    first = steps[f"all {NEW}"]["dedup_index"]
    assert first["pending_earlier_snapshots"].value == [OLD] and first["dropped_as_earlier_duplicates"].value == 0
    assert first["snapshot_kept"].value == first["snapshot_pairs"].value  # nothing earlier to lose against yet
    rebuilt = steps[f"rebuild {NEW}"]["dedup_index"]
    assert rebuilt["reused_index_of"].value == OLD and rebuilt["pending_earlier_snapshots"].value == []

    store, root = curated_sample.store(), curated_sample.root
    old_pairs = read_table(store, load_manifest(store, "clip_filtered_pairs", OLD))
    new_pairs = read_table(store, load_manifest(store, "clip_filtered_pairs", NEW))
    shared = set(old_pairs["uid"]) & set(new_pairs["uid"])
    assert len(shared) >= 4, "the sample crawl puts the same images in both snapshots"
    later_first = {s: own(root, s) for s in (OLD, NEW)}
    assert shared.isdisjoint(later_first[NEW]["uid"]) and sorted(later_first[OLD]["uid"]) == sorted(old_pairs["uid"])
    assert set(later_first[NEW]["uid"]) == set(new_pairs["uid"]) - shared
    index = load_manifest(store, "dedup_index", NEW)
    drops = pl.read_parquet(root / index.stats["drops"])
    assert set(drops["uid"]) == shared and set(drops["reason"]) == {SAME_PAIR}  # same URL and caption
    assert set(drops["duplicate_of_snapshot"]) == {OLD} and sorted(drops["duplicate_of_uid"]) == sorted(shared)
    assert rebuilt["dropped_as_earlier_duplicates"].value == len(shared)
    assert index.rows == later_first[OLD].height + later_first[NEW].height
    assert set(read_table(store, index)["uid"]) == set(old_pairs["uid"]) | set(new_pairs["uid"])
    assert index.parts[0] in load_manifest(store, "dedup_index", OLD).parts  # the earlier index is referenced, not copied

    # The other order on the same curated data (embeddings are only read): earlier snapshot first.
    earlier_first = curated_sample.copy_store(tmp_path / "store", ignore=("dedup_index",))
    embeddings = {s: load_manifest(store, "clip_embeddings", s).parts for s in (OLD, NEW)}
    with environment(curated_sample.env), dg.instance_for_test() as instance:
        register_snapshots(instance, [OLD, NEW])
        materialise(instance, earlier_first, curated_sample.server, OLD, selection=["dedup_index"])
        result = materialise(instance, earlier_first, curated_sample.server, NEW, selection=["dedup_index"])
        assert metadata_by_asset(result)["dedup_index"]["reused_index_of"].value == OLD
    for snapshot in (OLD, NEW):
        assert own(earlier_first, snapshot).equals(later_first[snapshot]), snapshot  # same rows, same order
        assert load_manifest(LocalObjectStore(earlier_first), "clip_embeddings", snapshot).parts == embeddings[snapshot]


def test_the_same_pair_seen_again_is_a_duplicate_even_when_its_image_changed():
    index, new = photo_hashes(3, seed=7), photo_hashes(2, seed=8)
    matches = match_against_index(index, new, phash_max_distance=4, index_uids=np.array(["a", "b", "c"]),
                                  new_uids=np.array(["c", "d"]))
    assert matches.duplicate_of.tolist() == [2, -1] and matches.reason == [SAME_PAIR, None]


def test_the_index_rows_carry_the_stored_embeddings_of_their_pairs(curated_sample):
    store = curated_sample.store()
    for snapshot in (OLD, NEW):
        mine = own(curated_sample.root, snapshot)
        stored = read_table(store, load_manifest(store, "clip_embeddings", snapshot)).select("uid", "image_embedding")
        joined = mine.join(stored, on="uid", how="left", suffix="_stored")
        assert mine.height > 0 and mine["uid"].is_sorted()
        assert joined["image_embedding"].equals(joined["image_embedding_stored"]), snapshot


def test_own_rows_are_written_in_bounded_parts_spanning_snapshots(tmp_path):
    from contextlib import ExitStack

    from danqing_assets.assets.dedup_index import OWN_PART_ROWS, SCHEMA, _own_frames, _Snapshot
    from danqing_assets.curation.embed.vector_file import VectorFile

    rng = np.random.default_rng(0)
    with ExitStack() as files:
        added, expected = [], []
        for snapshot, n in (("CC-MAIN-2026-08", OWN_PART_ROWS - 5), ("CC-MAIN-2026-17", 12)):
            vectors = rng.normal(size=(n, 8)).astype(np.float16)
            embedded = rng.random(n) > 0.1
            file = files.enter_context(VectorFile(8, directory=tmp_path))
            file.append(vectors)
            rows = pl.DataFrame({"uid": [f"{snapshot}-{i:06d}" for i in range(n)], "snapshot": [snapshot] * n,
                                 "phash": rng.integers(0, 2**62, n)}, schema={k: SCHEMA[k] for k in ("uid", "snapshot", "phash")})
            added.append(_Snapshot(rows, file.array(), embedded))
            blobs = [v.tobytes() if e else None for v, e in zip(vectors, embedded)]
            expected.append(rows.with_columns(pl.Series("image_embedding", blobs, dtype=pl.Binary)))
        frames = list(_own_frames(added))
    assert [f.height for f in frames] == [OWN_PART_ROWS, 7]
    assert pl.concat(frames).equals(pl.concat(expected)) and frames[0].schema == pl.Schema(SCHEMA)
    assert [f.height for f in _own_frames([])] == [0]  # an index that adds nothing still has its (empty) part
