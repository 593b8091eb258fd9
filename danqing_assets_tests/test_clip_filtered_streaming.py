"""``clip_filtered_pairs`` streams its inputs part by part and still judges as if it held the whole snapshot:
the same rows in the same order, reasons, representatives and clustering statistics as judging the joined
snapshot at once, whichever order the embeddings come in."""

from types import SimpleNamespace

import dagster as dg
import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from danqing_assets.assets.clip_filtered_pairs import band_reasons, lookup
from danqing_assets.curation.dedup.near_duplicates import pick_representatives
from danqing_assets.curation.dedup.semantic import semantic_clusters
from danqing_assets.curation.embed.embedder import from_binary, to_binary
from danqing_assets.partitions import register_snapshots
from danqing_assets.resources.storage import LocalObjectStore, write_parquet
from danqing_assets.resources.tables import (
    TableManifest,
    commit_table,
    load_manifest,
    part_key,
    read_table,
    schema_names,
)
from danqing_assets_tests.curated_sample import environment, materialise, metadata_by_asset

SNAPSHOT = "CC-MAIN-2026-08"
DIM = 32
SETTINGS = {"DANQING_CLIP_BAND_MIN": "1.06", "DANQING_CLIP_BAND_MAX": "1.24", "DANQING_CLIP_SCORE_SCALE": "4",
            "DANQING_SEMANTIC_MAX_DISTANCE": "0.1"}


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.standard_normal((n, DIM))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def snapshot_tables(seed: int = 0) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Pairs, and their embeddings: near-duplicate groups (some of equal image area, so the uid decides),
    scores inside, below and above the band, a NaN score, a zero vector, a pair never embedded and an
    embedding of no pair."""
    rng = np.random.default_rng(seed)
    n = 400
    vectors = unit(rng, n)
    for group in range(40):  # rows 10g .. 10g+3 are copies of row 10g at cosine distance ~0.005
        seed_row = vectors[10 * group]
        for member in range(1, 4):
            noise = unit(rng, 1)[0]
            vectors[10 * group + member] = seed_row + 0.1 * (noise - (noise @ seed_row) * seed_row)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors[7] = 0.0  # invalid: zero norm
    cosine = rng.choice([0.28, 0.29, 0.30, 0.2, 0.4], size=n, p=[0.3, 0.3, 0.2, 0.1, 0.1]).astype(np.float32)
    cosine[11] = np.nan
    width = rng.choice([100, 200], size=n)
    width[20:24] = 300  # one group of equal areas
    uids = [f"{i:032x}" for i in rng.permutation(10 * n)[:n]]
    pairs = pl.DataFrame({"uid": uids, "url": [f"http://e.test/{i}.jpg" for i in range(n)],
                          "text": [f"caption {i}" for i in range(n)], "orig_width": width.astype(np.int32),
                          "orig_height": np.full(n, 150, dtype=np.int32)})  # fmt: skip
    embeddings = pl.DataFrame({"uid": uids, "image_uid": uids, "clip_score": cosine,
                               "image_embedding": to_binary(vectors.astype(np.float16)),
                               "text_embedding": to_binary(vectors.astype(np.float16))})  # fmt: skip
    stray = embeddings[:1].with_columns(uid=pl.lit("f" * 32), clip_score=pl.lit(0.5, dtype=pl.Float32))
    return pairs, pl.concat([embeddings.filter(pl.col("uid") != uids[30]), stray])  # pair 30: never embedded


def whole_snapshot(pairs: pl.DataFrame, embeddings: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame, dict, int]:
    """Judging the whole snapshot at once: one join, one clustering (the stage before it streamed)."""
    joined = pairs.join(embeddings.select("uid", "clip_score", "image_embedding"), on="uid", how="left")
    reason = band_reasons(joined["clip_score"].fill_null(float("nan")) * 4.0, 1.06, 1.24)
    reason = pl.select(pl.when(pl.lit(joined["clip_score"]).is_null()).then(pl.lit("clip:not_embedded"))
                       .otherwise(pl.lit(reason))).to_series()  # fmt: skip
    in_band = reason.is_null().to_numpy()
    vectors = from_binary([b if b is not None else bytes(2 * DIM) for b in joined["image_embedding"].to_list()])
    labels, stats = semantic_clusters(vectors.astype(np.float32), 0.1, exclude=~in_band)
    area = (joined["orig_width"].cast(pl.Int64) * joined["orig_height"].cast(pl.Int64)).to_numpy()
    keep = pick_representatives(labels, area=area, snapshot=[SNAPSHOT] * joined.height, uid=joined["uid"])
    reason = pl.select(pl.when(pl.lit(in_band & ~keep)).then(pl.lit("semantic_duplicate"))
                       .otherwise(pl.lit(reason))).to_series()  # fmt: skip
    judged = joined.drop("image_embedding").with_columns(reason=reason)
    clustered = int(np.sum(np.bincount(labels[labels >= 0]) > 1))
    return (judged.filter(pl.col("reason").is_null()).drop("reason"), judged.filter(pl.col("reason").is_not_null()),
            stats.as_dict(), clustered)  # fmt: skip


def commit_parts(store, asset: str, frames: list[pl.DataFrame], stats: dict) -> None:
    keys = []
    for i, frame in enumerate(frames):
        keys.append(part_key(asset, SNAPSHOT, f"part-{i:05d}-test"))
        write_parquet(store, keys[-1], frame)
    commit_table(store, TableManifest(asset, SNAPSHOT, tuple(keys), sum(f.height for f in frames),
                                      schema_names(dict(frames[0].schema)), stats))


@pytest.mark.parametrize("embedding_order", ["as_pairs", "shuffled"])
def test_streamed_judging_equals_judging_the_whole_snapshot(tmp_path, embedding_order):
    pairs, embeddings = snapshot_tables()
    if embedding_order == "shuffled":
        embeddings = embeddings.sample(fraction=1.0, shuffle=True, seed=3)
    store = LocalObjectStore(tmp_path / "store")
    commit_parts(store, "image_filtered_pairs", [pairs[:150], pairs[:0], pairs[150:]], {})
    commit_parts(store, "clip_embeddings", [embeddings[:250], embeddings[250:]], {"dim": DIM, "random_weights": False})

    with environment(SETTINGS), dg.instance_for_test() as instance:
        register_snapshots(instance, [SNAPSHOT])
        result = materialise(instance, tmp_path / "store", SimpleNamespace(base_url="http://127.0.0.1:9/"), SNAPSHOT,
                             selection=["clip_filtered_pairs", "clip_rejected_pairs"])
    kept_manifest = load_manifest(store, "clip_filtered_pairs", SNAPSHOT)
    rejected_manifest = load_manifest(store, "clip_rejected_pairs", SNAPSHOT)
    kept, rejected = read_table(store, kept_manifest), read_table(store, rejected_manifest)

    want_kept, want_rejected, want_stats, want_clustered = whole_snapshot(pairs, embeddings)
    assert set(want_rejected["reason"]) == {"clip_band:below", "clip_band:above", "clip:not_embedded",
                                            "semantic_duplicate"}  # every verdict is exercised
    assert_frame_equal(kept, want_kept)
    assert_frame_equal(rejected, want_rejected)
    assert len(kept_manifest.parts) == len(rejected_manifest.parts) == 3  # one of each per pair part
    assert kept_manifest.rows == want_kept.height and rejected_manifest.rows == want_rejected.height
    semantic = kept_manifest.stats["semantic"]
    assert {k: v for k, v in semantic.items() if not k.startswith("seconds")} == {
        k: v for k, v in want_stats.items() if not k.startswith("seconds")}
    assert kept_manifest.stats["reasons"] == dict(sorted(want_rejected["reason"].value_counts().iter_rows()))
    assert metadata_by_asset(result)["clip_filtered_pairs"]["semantic_clusters_with_duplicates"].value == want_clustered > 0


def test_lookup_is_a_left_join_that_keeps_the_order_of_the_uids():
    scores = pl.DataFrame({"uid": ["a", "c", "d"], "clip_score": [0.1, 0.3, 0.4]})
    found = lookup(scores, pl.Series(["d", "b", "a", "z", "c"]))
    assert found["clip_score"].to_list() == [0.4, None, 0.1, None, 0.3]
    assert lookup(scores.clear(), pl.Series(["a"]))["clip_score"].to_list() == [None]
