"""Chinese-CLIP: loading, GPU routing, and the embedding + band stage on a sample snapshot (random small model)."""

import json

import dagster as dg
import numpy as np
import pytest
import torch

from danqing_assets.curation.embed.clip_model import ClipConfig, ClipWeightsMissing, load_clip
from danqing_assets.curation.embed.embedder import embed_pairs, from_binary
from danqing_assets.definitions import ALL_ASSETS
from danqing_assets.gpu import GPU_POOL, GPU_TAG
from danqing_assets.resources.tables import load_manifest, read_table
from danqing_assets_tests import gpu_jobs
from danqing_assets_tests.realworld import REALWORLD


def test_no_weights_is_a_clear_error_unless_random_weights_are_allowed():
    with pytest.raises(ClipWeightsMissing, match="DANQING_CLIP_CHECKPOINT"):
        load_clip(ClipConfig(arch="RN50"))
    with pytest.raises(ClipWeightsMissing, match="does not exist"):
        load_clip(ClipConfig(arch="RN50", checkpoint="/nonexistent/clip.pt"))
    with pytest.raises(ValueError, match="unknown Chinese-CLIP architecture"):
        load_clip(ClipConfig(arch="ViT-Z-99", allow_random_weights=True))


def test_a_local_checkpoint_loads_through_cn_clip_and_embeddings_are_deterministic(tmp_path, caplog):
    random = load_clip(ClipConfig(arch="RN50", allow_random_weights=True))
    assert random.random_weights and "RANDOMLY INITIALISED" in caplog.text
    checkpoint = tmp_path / "clip_rn50.pt"
    torch.save({"state_dict": {k: v.half() for k, v in random.model.state_dict().items()}}, checkpoint)
    loaded = load_clip(ClipConfig(arch="RN50", checkpoint=str(checkpoint)))
    assert not loaded.random_weights and loaded.source.startswith("checkpoint")
    photo = (REALWORLD / "chinese-clip" / "pokemon.jpeg").read_bytes()
    texts = ["一只黄色的皮卡丘", "一只在草地上奔跑的狗"]
    a = embed_pairs(random, [photo, photo], texts, batch_size=2, workers=0)
    b = embed_pairs(loaded, [photo, photo], texts, batch_size=2, workers=1)
    assert a.image.dtype == np.float16 and a.image.shape[0] == 2
    assert np.allclose(np.linalg.norm(a.image.astype(np.float32), axis=1), 1, atol=1e-2)
    assert np.allclose(a.image, b.image, atol=1e-2) and np.allclose(a.score, b.score, atol=1e-2)
    again = embed_pairs(random, [photo, photo], texts, batch_size=2, workers=0)
    assert np.array_equal(a.image, again.image)


def test_gpu_tags_are_on_every_embedding_step_and_nowhere_else():
    gpu_ops = set()
    for asset in ALL_ASSETS:
        node = asset.node_def
        ops = list(node.iterate_op_defs()) if isinstance(node, dg.GraphDefinition) else [node]
        for op in ops:
            if op.tags.get(GPU_TAG) == "true":
                gpu_ops.add(op.name)
                assert op.tags["dagster-celery/queue"] == "gpu"
                k8s = json.loads(op.tags["dagster-k8s/config"])
                assert k8s["container_config"]["resources"]["limits"]["nvidia.com/gpu"] == "1"
                assert op.pool == GPU_POOL
            else:
                assert "dagster-celery/queue" not in op.tags and "dagster-k8s/config" not in op.tags
    assert gpu_ops == {"clip_embeddings", "benchmark_results"}  # both run the model


def test_at_most_one_gpu_step_runs_at_a_time_under_the_default_executor(tmp_path, monkeypatch):
    log = tmp_path / "steps.log"
    monkeypatch.setenv("DANQING_TEST_STEP_LOG", str(log))
    with dg.instance_for_test() as instance:
        result = dg.execute_job(dg.reconstructable(gpu_jobs.two_gpu_steps), instance=instance)
        assert result.success
    spans = {name: (float(s), float(e)) for name, s, e in (line.split() for line in log.read_text().splitlines())}
    (a0, a1), (b0, b1) = spans["gpu_a"], spans["gpu_b"]
    assert a1 <= b0 or b1 <= a0, "two GPU steps overlapped"
    c0, c1 = spans["cpu"]
    assert c0 < max(a1, b1) and c1 > min(a0, b0)  # the CPU step ran beside a GPU step: the limit is only for GPU steps


SNAPSHOT = "CC-MAIN-2026-08"


def test_sample_snapshot_is_embedded_once_and_filtered_many_times(curated_sample, tmp_path):
    from danqing_assets.partitions import register_snapshots
    from danqing_assets.resources.storage import LocalObjectStore
    from danqing_assets_tests.curated_sample import environment, materialise

    # the session's curated sample: random RN50, band wide open, semantic dedup off
    meta = dict(curated_sample.steps)[f"all {SNAPSHOT}"]
    root = curated_sample.copy_store(tmp_path / "store")
    store = LocalObjectStore(root)
    pairs = read_table(store, load_manifest(store, "image_filtered_pairs", SNAPSHOT))
    emb_manifest = load_manifest(store, "clip_embeddings", SNAPSHOT)
    emb = read_table(store, emb_manifest)
    assert sorted(emb["uid"]) == sorted(pairs["uid"]) and emb_manifest.stats["random_weights"] is True
    vectors = from_binary(emb["image_embedding"].to_list())
    assert vectors.dtype == np.float16 and vectors.shape == (pairs.height, 1024)
    assert meta["clip_embeddings"]["random_weights"].value is True
    assert "RANDOMLY INITIALISED" in meta["clip_embeddings"]["WARNING"].value
    assert "RANDOM WEIGHTS" in meta["clip_filtered_pairs"]["score_distribution"].value
    assert load_manifest(store, "clip_filtered_pairs", SNAPSHOT).rows == pairs.height  # band wide open, dedup off

    # a narrower band re-runs only the filter: the embeddings are not computed again
    median = float(np.median(emb["clip_score"].to_numpy()))
    with environment({**curated_sample.env, "DANQING_CLIP_BAND_MIN": str(median * 4)}), \
            dg.instance_for_test() as instance:
        register_snapshots(instance, [SNAPSHOT])
        again = materialise(instance, root, curated_sample.server, SNAPSHOT,
                            selection=["clip_filtered_pairs", "clip_rejected_pairs"])
        assert {e.asset_key.to_user_string() for e in again.get_asset_materialization_events()} == {
            "clip_filtered_pairs", "clip_rejected_pairs"}
    assert load_manifest(store, "clip_embeddings", SNAPSHOT).parts == emb_manifest.parts
    kept = read_table(store, load_manifest(store, "clip_filtered_pairs", SNAPSHOT))
    rejected = read_table(store, load_manifest(store, "clip_rejected_pairs", SNAPSHOT))
    assert kept.height + rejected.height == pairs.height
    assert (kept["clip_score"] * 4 >= median * 4 - 1e-6).all()
    assert set(rejected["reason"]) == {"clip_band:below"}
