"""``benchmark_results`` on a sample snapshot: the paper's analysis, a smoke-test evaluation, a configured set."""

import base64
import io
import re

import dagster as dg
import numpy as np
import pytest
from PIL import Image

from danqing_assets.assets.benchmark_results import comparison_table, results_key, stored_results
from danqing_assets.curation.evaluation.benchmark_sets import write_retrieval_set, write_zeroshot_set
from danqing_assets.resources.storage import LocalObjectStore, get_json, put_json
from danqing_assets.resources.tables import load_manifest, read_table
from danqing_assets_tests.curated_sample import NEW, OLD, environment, materialise, metadata_by_asset
from danqing_assets_tests.realworld import REALWORLD

SNAPSHOT = OLD
INLINE_PICTURES = ["caption_length", "resolution", "score_distribution", "semantic_balance"]
CHARTS = ["caption_length_chart", "resolution_chart", "score_chart", "semantic_balance_chart", "part_of_speech_chart"]


def png_of(markdown: str) -> Image.Image:
    data = re.search(r"\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", markdown)
    assert data, markdown[:200]
    image = Image.open(io.BytesIO(base64.b64decode(data.group(1))))
    image.load()
    return image


def coco_benchmark_sets(root):
    """Ten real COCO photos with their Chinese tag votes (coco-cn), written as Chinese-CLIP sets."""
    folder = REALWORLD / "coco-cn" / "sample_images"
    tags = {}
    for line in (folder / "mscoco2014tags.tagvotes.zh.txt").read_text(encoding="utf-8").splitlines():
        name, *votes = line.split()
        tags[name] = [t for t, _ in sorted(zip(votes[::2], map(float, votes[1::2])), key=lambda tv: -tv[1])]
    photos = sorted(folder.glob("*.jpg"))
    ids = [int(p.stem.rsplit("_", 1)[1]) for p in photos]
    write_retrieval_set(root / "coco-tags", "test",
                        [(i, f"{tags[p.stem][0]}、{tags[p.stem][1]}和{tags[p.stem][2]}", [image_id])
                         for i, (p, image_id) in enumerate(zip(photos, ids))],
                        [(image_id, p.read_bytes()) for p, image_id in zip(photos, ids)])
    classes = sorted({tags[p.stem][0] for p in photos})
    write_zeroshot_set(root / "coco-top-tag", classes, [(classes.index(tags[p.stem][0]), p.name, p.read_bytes()) for p in photos])
    return len(photos), len(classes)


def test_sample_snapshot_analysis_smoke_evaluation_and_a_configured_set(curated_sample, tmp_path):
    from danqing_assets.partitions import register_snapshots

    root = curated_sample.copy_store(tmp_path / "store")
    store = LocalObjectStore(root)
    meta = dict(curated_sample.steps)[f"all {SNAPSHOT}"]["benchmark_results"]

    def materialise_results(instance, raise_on_error=True):
        result = materialise(instance, root, curated_sample.server, SNAPSHOT, selection=["benchmark_results"],
                             raise_on_error=raise_on_error)
        return result, metadata_by_asset(result).get("benchmark_results")

    # the session's curated sample: both snapshots curated and released
    pairs = read_table(store, load_manifest(store, "clip_filtered_pairs", SNAPSHOT))  # the earlier snapshot: all released
    results = get_json(store, results_key(SNAPSHOT))

    # the analysis covers every curated pair
    analysis = results["analysis"]
    assert analysis["pairs"] == pairs.height == meta["pairs"].value > 10
    assert sum(results["histograms"]["caption_words"]["counts"]) == pairs.height
    assert sum(results["cluster_sizes"]) == pairs.height and results["cluster_sizes"] == sorted(results["cluster_sizes"], reverse=True)
    # caption length agrees with the text stage's own word count of the same captions
    assert analysis["caption_words_mean"] == pytest.approx(pairs["word_count"].mean())
    short = np.minimum(pairs["orig_width"].to_numpy(), pairs["orig_height"].to_numpy())
    assert analysis["short_side_median_px"] == pytest.approx(float(np.median(short)))
    assert 0 < analysis["noun_share"] < 1 and meta["analysis/noun_share"].value == pytest.approx(analysis["noun_share"])

    # pictures: small ones inline (under the UI's 1,000 characters), full charts beside them
    for name in INLINE_PICTURES:
        assert len(meta[name].value) < 1000, name
        assert png_of(meta[name].value).width > 20
    for name in CHARTS:
        assert png_of(meta[name].value).size == (560, 260)

    # the smoke-test evaluation ran on random weights and says so, everywhere
    assert results["smoke_test"] is True and results["random_weights"] is True
    assert "RANDOMLY INITIALISED" in meta["WARNING"].value and "SMOKE TEST" in meta["WARNING"].value
    by_set = {r["set"]: r for r in results["evaluation"]}
    assert by_set["smoke-retrieval"]["texts"] == by_set["smoke-retrieval"]["images"] == 12
    assert set(by_set["smoke-retrieval"]["text_to_image"]) == {"R@1", "R@5", "R@10"}
    assert by_set["smoke-zeroshot"]["classes"] == 3 and by_set["smoke-zeroshot"]["images"] == 12
    assert "smoke-retrieval | retrieval | test | 12 texts, 12 images" in meta["evaluation"].value
    assert f"**{SNAPSHOT}**" in meta["comparison_across_snapshots"].value  # NEW was curated first: both shown
    assert NEW in meta["comparison_across_snapshots"].value


    # a configured benchmark directory replaces the smoke set; only benchmark_results runs again
    n_photos, n_classes = coco_benchmark_sets(tmp_path / "sets")
    configured = {**curated_sample.env, "DANQING_BENCHMARK_SETS_DIR": str(tmp_path / "sets"),
                  "DANQING_BENCHMARK_PROMPT_TEMPLATES": "normal"}  # cn_clip's 183 templates are slow on a CPU
    with environment(configured), dg.instance_for_test() as instance:
        register_snapshots(instance, [SNAPSHOT])
        result, meta = materialise_results(instance)
    results = get_json(store, results_key(SNAPSHOT))
    assert results["smoke_test"] is False and "SMOKE TEST" not in meta["WARNING"].value
    by_set = {r["set"]: r for r in results["evaluation"]}
    assert by_set["coco-tags"]["texts"] == n_photos and by_set["coco-tags"]["split"] == "test"
    assert by_set["coco-top-tag"]["classes"] == n_classes and by_set["coco-top-tag"]["templates"] == 1
    comparison = meta["comparison_across_snapshots"].value
    assert f"| | **{SNAPSHOT}** | {NEW} |" in comparison and f"| pairs | {pairs.height} | " in comparison
    assert "coco-tags mean recall" in comparison

    # a directory that is not there is a clear failure, not a silent smoke test
    with environment({**configured, "DANQING_BENCHMARK_SETS_DIR": str(tmp_path / "missing")}), \
            dg.instance_for_test() as instance:
        register_snapshots(instance, [SNAPSHOT])
        result, _ = materialise_results(instance, raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "does not exist" in failure.event_specific_data.error.cause.message
    assert get_json(store, results_key(SNAPSHOT))["evaluation"] == results["evaluation"]  # previous results kept


def test_comparison_reads_every_stored_snapshot(tmp_path):
    store = LocalObjectStore(tmp_path)
    for snapshot, pairs, recall in [("CC-MAIN-2026-17", 900, 31.5), ("CC-MAIN-2026-08", 1200, 12.25)]:
        put_json(store, results_key(snapshot), {
            "analysis": {"pairs": pairs, "noun_share": 0.4}, "random_weights": snapshot.endswith("08"), "smoke_test": False,
            "evaluation": [{"set": "flickr30k-cn", "kind": "retrieval", "mean_recall": recall}]})
    store.put_bytes("datasets/benchmark_results/CC-MAIN-2026-08/files/chart.png", b"not results")
    by_snapshot = stored_results(store)
    assert sorted(by_snapshot) == ["CC-MAIN-2026-08", "CC-MAIN-2026-17"]
    table = comparison_table("CC-MAIN-2026-17", by_snapshot, ["noun_share"]).splitlines()
    assert table[0] == "| | CC-MAIN-2026-08 | **CC-MAIN-2026-17** |"
    assert table[2:5] == ["| noun_share | 0.4 | 0.4 |", "| pairs | 1,200 | 900 |", "| flickr30k-cn mean recall | 12.2 | 31.5 |"]
    assert table[-1] == "Random-weight or smoke-test evaluation in: CC-MAIN-2026-08."
