"""Incremental updates: the code location's automation conditions, evaluated on a history of materialisations.

The history is reported as runless materialisations; the conditions evaluated are
the real assets' own. "A setting changes" is what it is in deployment: the code
location is loaded again (a fresh process) with one ``DANQING_*`` variable
changed, and evaluated with the cursor the previous evaluation left.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
from dagster._core.definitions.asset_daemon_cursor import AssetDaemonCursor

from danqing_assets.asset_versions import ASSET_STAGES, STAGES, asset_code_version
from danqing_assets.definitions import defs
from danqing_assets.partitions import register_snapshots
from danqing_assets.sensors import AUTOMATION_SENSOR
from danqing_assets.settings import Settings, get_settings

A, B, C = "CC-MAIN-2026-08", "CC-MAIN-2026-17", "CC-MAIN-2026-21"
# The per-snapshot assets, in pipeline order. Left out: the cumulative dedup_index (it depends on every
# snapshot's CLIP stage) and the two unpartitioned ones (takedown_list, release_manifest).
PIPELINE = [a for a in ASSET_STAGES if a not in ("dedup_index", "takedown_list", "release_manifest")]
RELEASE = {"release", "benchmark_results"}  # downstream of a snapshot's CLIP stage, for that snapshot
TEXT = {"text_filtered_pairs", "text_rejected_pairs"}
IMAGE_AND_CLIP = {"downloaded_images", "image_download_failures", "image_filtered_pairs", "image_rejected_pairs",
                  "clip_embeddings", "clip_filtered_pairs", "clip_rejected_pairs"}
CLIP_FILTER = {"clip_filtered_pairs", "clip_rejected_pairs"}


def report(instance: dg.DagsterInstance, assets, snapshot: str) -> None:
    for asset in assets:
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=asset, partition=snapshot))


def requested(result) -> dict[str, set[str]]:
    """Requested partitions of the per-snapshot assets (dedup_index, cumulative, has its own condition)."""
    out = {}
    for asset in PIPELINE:
        partitions = result.get_requested_partitions(dg.AssetKey(asset))
        if partitions:
            out[asset] = set(partitions)
    return out


def history(instance: dg.DagsterInstance) -> None:
    """A and B materialised through the whole pipeline; C only up to the image stage."""
    register_snapshots(instance, [A, B, C])
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key="takedown_list"))
    for snapshot in (A, B):
        report(instance, PIPELINE + ["dedup_index"], snapshot)
    report(instance, PIPELINE[:PIPELINE.index("clip_embeddings")], C)


def evaluate(instance, cursor=None):
    # only the per-snapshot assets' conditions (their upstreams are all among them); the later, cumulative
    # assets have conditions of their own
    selection = dg.AssetSelection.assets(*PIPELINE)
    return dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor, asset_selection=selection)


def test_every_per_snapshot_asset_carries_its_settings_version_and_the_condition():
    graph = defs.resolve_asset_graph()
    settings = get_settings()
    for asset in PIPELINE:
        node = graph.get(dg.AssetKey(asset))
        assert node.code_version == asset_code_version(asset, settings), asset
        assert node.automation_condition.get_label() == "follows_upstream_and_settings", asset
    sensor = defs.resolve_sensor_def(AUTOMATION_SENSOR)
    assert isinstance(sensor, dg.AutomationConditionSensorDefinition)
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING  # the daemon acts without a click
    assert set(PIPELINE) <= {k.to_user_string() for k in sensor.asset_selection.resolve(graph)}


def test_a_setting_changes_only_the_version_of_the_stage_it_affects(tmp_path):
    base = Settings()
    versions = {asset: asset_code_version(asset, base) for asset in PIPELINE}

    def changed(**kw) -> set[str]:
        settings = base.model_copy(update=kw)
        return {asset for asset in PIPELINE if asset_code_version(asset, settings) != versions[asset]}

    assert changed(clip_band_min=1.1) == CLIP_FILTER
    assert changed(text_min_words=3) == TEXT
    assert changed(clip_arch="RN50") == {"clip_embeddings"}
    assert changed(page_languages="zho,jpn") == {"raw_pairs"}
    # how fast or where a stage runs is no reason to recompute it
    assert changed(download_concurrency=8, warc_files_per_shard=4, cc_base_url="http://mirror/", clip_batch_size=8,
                   storage_kind="s3", step_max_retries=0) == set()
    # a user word list counts by its content
    words = tmp_path / "sensitive.txt"
    words.write_text("甲\n")
    assert changed(sensitive_words_file=words) == TEXT
    with_words = base.model_copy(update={"sensitive_words_file": words})
    before = asset_code_version("text_filtered_pairs", with_words)
    words.write_text("甲\n乙\n")
    assert asset_code_version("text_filtered_pairs", with_words) != before
    assert all(set(stage.settings) <= set(Settings.model_fields) for stage in STAGES.values())


def test_rematerialising_text_filtered_pairs_updates_only_that_snapshots_downstream():
    with dg.instance_for_test() as instance:
        history(instance)
        first = evaluate(instance)
        assert requested(first) == {}  # the first evaluation only takes note
        quiet = evaluate(instance, first.cursor)
        assert requested(quiet) == {}  # nothing changed, nothing requested

        report(instance, TEXT, A)  # the text stage of A was re-materialised
        update = evaluate(instance, quiet.cursor)
        assert requested(update) == {asset: {A} for asset in IMAGE_AND_CLIP | RELEASE}

        # requested once: the next tick does not ask again while nothing else changed
        assert requested(evaluate(instance, update.cursor)) == {}


def _ticks_of_fresh_code_location(home: Path, cursor, env: dict[str, str], ticks: int) -> tuple[list[dict], object]:
    """Load the code location in a new process with ``env`` and evaluate ``ticks`` times from ``cursor``."""
    cursor_file = home / "cursor.json"
    cursor_file.write_text(dg.serialize_value(cursor))
    proc = subprocess.run(
        [sys.executable, "-m", "danqing_assets_tests.test_automation", str(home), str(cursor_file), str(ticks)],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    answer = json.loads(proc.stdout.strip().splitlines()[-1])
    return ([{k: set(v) for k, v in tick.items()} for tick in answer],
            dg.deserialize_value(cursor_file.read_text(), AssetDaemonCursor))


def test_a_changed_setting_requests_the_affected_asset_for_materialised_snapshots_only(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        history(instance)
        cursor = evaluate(instance).cursor

    # reloaded with the same settings: the versions are the same, nothing is requested
    same, cursor = _ticks_of_fresh_code_location(home, cursor, {}, ticks=1)
    assert same == [{}]
    # reloaded with a new band: clip_filtered_pairs of A and B (C never reached it) and their releases, nothing
    # else; the next tick asks for nothing more
    band, _ = _ticks_of_fresh_code_location(home, cursor, {"DANQING_CLIP_BAND_MIN": "1.1"}, ticks=2)
    assert band == [{asset: {A, B} for asset in CLIP_FILTER | RELEASE}, {}]


def _main(home: str, cursor_file: str, ticks: str) -> None:
    """Automation ticks of a freshly loaded code location (run by the test above)."""
    cursor = dg.deserialize_value(Path(cursor_file).read_text(), AssetDaemonCursor)
    answers = []
    with dg.DagsterInstance.from_config(home) as instance:
        for _ in range(int(ticks)):
            result = evaluate(instance, cursor)
            cursor = result.cursor
            answers.append({k: sorted(v) for k, v in requested(result).items()})
    Path(cursor_file).write_text(dg.serialize_value(cursor))
    print(json.dumps(answers))


if __name__ == "__main__":
    _main(*sys.argv[1:4])
