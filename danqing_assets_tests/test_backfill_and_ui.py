"""A backfill of the whole graph in a real ``dagster dev``, then the asset pages in headless Chromium.

One ``dagster dev`` session (the pipeline is the slow part, so it runs once):

1. both sample snapshots are backfilled through GraphQL (``launchPartitionBackfill`` with every
   asset key and both partitions — Dagster 1.13 puts the unpartitioned ``takedown_list`` and
   ``release_manifest`` into the same asset backfill and orders them by the graph), the backfill
   daemon runs it on the code location's own executor;
2. GraphQL then shows every per-snapshot asset materialised for both snapshots by the backfill's
   runs (and no other run: the automation sensor, running as deployed, stays out of a backfill),
   the unpartitioned ones materialised, and every release gate (blocking asset check) passed for
   both snapshots;
3. Chromium opens one snapshot's Partitions tab of ``benchmark_results`` and ``release`` (the
   overview would show whichever partition finished last): every inline picture and every picture
   behind ``[Show Markdown]`` decoded, and is exactly the picture stored in the metadata, at its
   size. Screenshots are kept under data/test-artifacts/ui-pictures/.
"""

import base64
import io
import json
import re
import time

import dagster as dg
from PIL import Image

from danqing_assets.curation.release.gates import GATES
from danqing_assets.partitions import register_snapshots
from danqing_assets_tests.browser import (
    HeadlessChromium,
    close_dialog,
    image_states,
    metadata_table,
    metadata_value,
    open_asset_page,
    save_screenshot,
    show_markdown,
)
from danqing_assets_tests.curated_sample import NEW, OLD, pipeline_environment
from danqing_assets_tests.dagster_dev import DagsterDev

SNAPSHOTS = [OLD, NEW]
UNPARTITIONED = {"takedown_list", "release_manifest"}
# Measured: 6 min on 2 cores shared with other test runs (three backfill-daemon waves, 30 s apart).
BACKFILL_TIMEOUT_S = 15 * 60
# Per asset page: a text entry naming the partition (to see the page shows the snapshot asked for) and
# the entries with pictures, shown inline or behind [Show Markdown] (markdown over 1,000 characters).
PAGES = {
    "benchmark_results": {
        "names_snapshot": "results",
        "inline": ["caption_length", "resolution", "score_distribution", "semantic_balance"],
        "dialog": ["caption_length_chart", "resolution_chart", "score_chart", "semantic_balance_chart",
                   "part_of_speech_chart"],
    },
    "release": {"names_snapshot": "location", "inline": [], "dialog": ["sample_images"]},
}

ASSET_NODES = """{ assetNodes { assetKey { path } isPartitioned } }"""

LAUNCH_BACKFILL = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on Error { message }
    ... on PythonError { stack }
  }
}"""

BACKFILL = """
query Backfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill {
      status isAssetBackfill
      error { message stack }
      runs { runId status tags { key value } }
      assetBackfillData { assetBackfillStatuses {
        __typename
        ... on AssetPartitionsStatusCounts {
          assetKey { path } numPartitionsTargeted numPartitionsMaterialized numPartitionsFailed
        }
        ... on UnpartitionedAssetStatus { assetKey { path } materialized failed }
      } }
    }
    ... on Error { message }
  }
}"""

STEP_FAILURES = """
query Failures($runId: ID!) {
  logsForRun(runId: $runId, limit: 100000) {
    ... on EventConnection { events {
      __typename
      ... on ExecutionStepFailureEvent { stepKey error { message stack } }
      ... on RunFailureEvent { message error { message } }
    } }
    ... on Error { message }
  }
}"""

MATERIALISATIONS = """
query Materialisations($keys: [AssetKeyInput!]) {
  assetNodes(assetKeys: $keys) {
    assetKey { path }
    assetPartitionStatuses {
      ... on DefaultPartitionStatuses { materializedPartitions failedPartitions unmaterializedPartitions }
    }
    assetMaterializations {
      runId partition
      metadataEntries {
        label
        ... on IntMetadataEntry { intValue }
        ... on TextMetadataEntry { text }
        ... on MarkdownMetadataEntry { mdStr }
        ... on JsonMetadataEntry { jsonString }
      }
    }
    assetChecksOrError { ... on AssetChecks { checks { name blocking } } }
  }
}"""

ALL_RUNS = """{ runsOrError { ... on Runs { results { runId } } } }"""

CHECK_EXECUTIONS = """
query Checks($key: AssetKeyInput!, $name: String!) {
  assetCheckExecutions(assetKey: $key, checkName: $name, limit: 20) { runId status evaluation { success } }
}"""


def _instance_home(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\nnux:\n  enabled: false\n")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        register_snapshots(instance, SNAPSHOTS)
    return home


def _key(path: list[str]) -> str:
    return "/".join(path)


def _failures(server: DagsterDev, backfill: dict) -> str:
    """The backfill's error and every failed run's step failures, for the assertion message."""
    lines = [f"backfill {backfill['status']}"]
    if backfill["error"]:
        lines.append(f"{backfill['error']['message']}\n{backfill['error']['stack']}")
    for run in backfill["runs"]:
        if run["status"] not in ("SUCCESS", "STARTED", "STARTING", "QUEUED", "NOT_STARTED"):
            lines.append(f"run {run['runId']}: {run['status']}")
            events = server.graphql(STEP_FAILURES, {"runId": run["runId"]})["logsForRun"].get("events", [])
            for event in events:
                if event["__typename"] == "ExecutionStepFailureEvent":
                    stack = "".join(event["error"]["stack"])
                    lines.append(f"  step {event['stepKey']}: {event['error']['message']}\n{stack}")
                elif event["__typename"] == "RunFailureEvent":  # e.g. a step process that could not start
                    lines.append(f"  run failure: {event['message']}\n{(event['error'] or {}).get('message', '')}")
    return "\n".join(lines)


def _wait_for_backfill(server: DagsterDev, backfill_id: str) -> dict:
    deadline = time.monotonic() + BACKFILL_TIMEOUT_S
    while True:
        backfill = server.graphql(BACKFILL, {"id": backfill_id})["partitionBackfillOrError"]
        assert backfill["__typename"] == "PartitionBackfill", backfill
        if backfill["status"] not in ("REQUESTED", "CANCELING", "FAILING"):
            return backfill
        if time.monotonic() > deadline:
            raise AssertionError(f"backfill still {backfill['status']} after {BACKFILL_TIMEOUT_S}s:\n"
                                 f"{backfill['assetBackfillData']}\n{_failures(server, backfill)}\n{server.log_tail()}")
        time.sleep(5)


def _pictures(markdown: str) -> list[tuple[str, tuple[int, int]]]:
    """(data URI, (width, height)) of every data-URI picture in a markdown string."""
    return [(uri, Image.open(io.BytesIO(base64.b64decode(data))).size)
            for uri, data in re.findall(r"!\[[^\]]*\]\((data:image/[a-z]+;base64,([A-Za-z0-9+/=]+))\)", markdown)]


def _assert_shows_pictures(root, markdown: str, what: str) -> None:
    """The browser decoded, under ``root``, exactly the pictures of ``markdown``, at their stored size."""
    states = image_states(root)
    shown = [(s.src, (s.width, s.height)) for s in states if s.rendered]
    expected = _pictures(markdown)
    assert expected and len(shown) == len(states) and shown == expected, f"{what}: {states} (expected sizes " \
        f"{[size for _, size in expected]})"


def _metadata(event: dict) -> dict[str, dict]:
    return {m["label"]: m for m in event["metadataEntries"]}


def check_backfill_materialised_everything(server: DagsterDev, backfill: dict, keys: list[dict]) -> dict[str, dict]:
    """Every asset partition materialised by the backfill's runs, the release gates passed; the asset nodes."""
    names = {_key(k["path"]) for k in keys}
    # the backfill's own account: every targeted asset partition materialised, none failed
    statuses = {_key(s["assetKey"]["path"]): s for s in backfill["assetBackfillData"]["assetBackfillStatuses"]}
    assert set(statuses) == names, (sorted(statuses), sorted(names))
    for name, status in statuses.items():
        if name in UNPARTITIONED:
            assert status["materialized"] and not status["failed"], status
        else:
            assert status["numPartitionsTargeted"] == status["numPartitionsMaterialized"] == 2, status
    runs = {r["runId"]: {t["key"]: t["value"] for t in r["tags"]} for r in backfill["runs"]}
    assert runs and all(r["status"] == "SUCCESS" for r in backfill["runs"])
    assert {r["runId"] for r in server.graphql(ALL_RUNS)["runsOrError"]["results"]} == set(runs)

    # the assets' own account: both partitions materialised, by the backfill's runs
    nodes = server.graphql(MATERIALISATIONS, {"keys": keys}, timeout_s=300)["assetNodes"]
    nodes = {_key(n["assetKey"]["path"]): n for n in nodes}
    assert set(nodes) == names
    for name, node in nodes.items():
        events = node["assetMaterializations"]
        assert events and {e["runId"] for e in events} <= set(runs), (name, events)
        if name in UNPARTITIONED:
            assert [e["partition"] for e in events] == [None], (name, events)
        else:
            partitions = node["assetPartitionStatuses"]
            assert sorted(partitions["materializedPartitions"]) == SNAPSHOTS, (name, partitions)
            assert partitions["failedPartitions"] == partitions["unmaterializedPartitions"] == []
            assert sorted(e["partition"] for e in events) == SNAPSHOTS, (name, events)

    # both snapshots released pairs, and the published manifest lists both
    released = {e["partition"]: _metadata(e)["dagster/row_count"]["intValue"]
                for e in nodes["release"]["assetMaterializations"]}
    assert all(rows > 0 for rows in released.values()), released
    manifest = _metadata(nodes["release_manifest"]["assetMaterializations"][0])
    assert manifest["dagster/row_count"]["intValue"] == sum(released.values())
    assert json.loads(manifest["unpublished"]["jsonString"]) == {}

    # the release gates: blocking checks, evaluated and passed for both snapshots
    checks = nodes["release"]["assetChecksOrError"]["checks"]
    assert {c["name"] for c in checks} == set(GATES) and all(c["blocking"] for c in checks)
    for gate in GATES:
        executions = server.graphql(CHECK_EXECUTIONS, {"key": {"path": ["release"]}, "name": gate})
        executions = executions["assetCheckExecutions"]
        assert {e["runId"] for e in executions} <= set(runs), (gate, executions)
        latest = {}
        for execution in executions:  # newest first; a retried step may have left an earlier one
            # a partitioned asset's check records no partition in 1.13: its run's partition tag tells it
            latest.setdefault(runs[execution["runId"]].get("dagster/partition"), execution)
        assert sorted(latest) == SNAPSHOTS, (gate, executions)
        for execution in latest.values():
            assert execution["status"] == "SUCCEEDED" and execution["evaluation"]["success"], (gate, execution)
    return nodes


def check_pictures_render(server: DagsterDev, nodes: dict[str, dict], snapshot: str) -> None:
    """Every picture on the asset pages in PAGES decoded in Chromium, at the size stored in the metadata."""
    stored = {asset: _metadata(next(e for e in nodes[asset]["assetMaterializations"] if e["partition"] == snapshot))
              for asset in PAGES}
    with HeadlessChromium(viewport=(1800, 3000)) as chrome:
        page = chrome.page
        for asset, shown in PAGES.items():
            open_asset_page(page, server.url, asset, snapshot)
            save_screenshot(metadata_table(page), f"ui-pictures/{asset}-metadata")
            names_snapshot = shown["names_snapshot"]
            assert snapshot in stored[asset][names_snapshot]["text"]
            assert metadata_value(page, names_snapshot).inner_text().strip() == stored[asset][names_snapshot]["text"]
            for key in shown["inline"]:
                cell = metadata_value(page, key)
                _assert_shows_pictures(cell, stored[asset][key]["mdStr"], f"{asset}.{key}")
                save_screenshot(cell, f"ui-pictures/{asset}-{key}")
            for key in shown["dialog"]:
                assert len(stored[asset][key]["mdStr"]) >= 1000  # else the UI shows it inline, not behind the link
                dialog = show_markdown(page, key)
                _assert_shows_pictures(dialog, stored[asset][key]["mdStr"], f"{asset}.{key}")
                save_screenshot(dialog, f"ui-pictures/{asset}-{key}")
                close_dialog(page)
            if asset == "benchmark_results":  # the warnings a person must not miss are on the page too
                warning = metadata_value(page, "WARNING").inner_text()
                assert "RANDOMLY INITIALISED" in warning and "SMOKE TEST" in warning
            if asset == "release":
                gates = metadata_value(page, "gates").inner_text()
                assert all(gate in gates for gate in GATES) and "FAIL" not in gates


def test_backfill_of_the_whole_graph_then_its_pictures_render_in_chromium(tmp_path, sample_server):
    home = _instance_home(tmp_path)
    env = {**pipeline_environment(sample_server.port), "DANQING_DATA_DIR": str(tmp_path / "data"),
           # one WARC file per snapshot and a small smoke-test set keep the run short; both still release pairs
           "DANQING_WARC_FILES_PER_SNAPSHOT": "1", "DANQING_BENCHMARK_SMOKE_PAIRS": "8"}
    server = DagsterDev(home, env)
    try:
        server.start(timeout_s=300)
        nodes = server.graphql(ASSET_NODES)["assetNodes"]
        keys = [n["assetKey"] for n in nodes]
        assert {_key(k["path"]) for k in keys} >= UNPARTITIONED | set(PAGES)
        assert {_key(n["assetKey"]["path"]) for n in nodes if not n["isPartitioned"]} == UNPARTITIONED

        # one asset backfill for every asset, partitioned or not, over both snapshots
        launched = server.graphql(LAUNCH_BACKFILL, {"params": {
            "assetSelection": keys, "partitionNames": SNAPSHOTS, "title": "whole graph, both sample snapshots"}})
        launched = launched["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        backfill = _wait_for_backfill(server, launched["backfillId"])
        assert backfill["status"] == "COMPLETED_SUCCESS", _failures(server, backfill) + "\n" + server.log_tail()

        nodes = check_backfill_materialised_everything(server, backfill, keys)
        check_pictures_render(server, nodes, NEW)
    finally:
        server.stop()  # the whole process group, also when the test failed
