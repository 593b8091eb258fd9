"""The new-crawl sensor against Common Crawl's real crawl list, served over HTTP on 127.0.0.1.

Each tick is run the way the daemon runs it: the sensor's partition requests are
applied to the instance and its cursor is handed to the next tick.
"""

import json
import time

import dagster as dg
import pytest

from danqing_assets.curation.crawl_ids import validate_crawl_id
from danqing_assets.definitions import defs
from danqing_assets.partitions import cc_snapshots
from danqing_assets.resources.common_crawl import CommonCrawlResource
from danqing_assets.sensors import NEW_CRAWL_TAG, build_new_crawl_sensor, crawl_sort_key, select_new_crawls
from danqing_assets.settings import get_settings
from danqing_assets_tests.dagster_dev import DagsterDev
from danqing_assets_tests.fault_server import FaultServer
from danqing_assets_tests.realworld import COLLINFO

REAL_LIST = COLLINFO.read_bytes()
REAL_IDS = [entry["id"] for entry in json.loads(REAL_LIST)]  # newest first, as Common Crawl publishes it
IRREGULAR = ["CC-MAIN-2012", "CC-MAIN-2009-2010", "CC-MAIN-2008-2009"]


def use_filter(monkeypatch, *, newest: int, from_year: int) -> None:
    monkeypatch.setenv("DANQING_NEW_CRAWLS_NEWEST", str(newest))
    monkeypatch.setenv("DANQING_NEW_CRAWLS_FROM_YEAR", str(from_year))
    get_settings.cache_clear()


class Daemon:
    """Ticks the sensor as the Dagster daemon does: partitions added, runs keyed, cursor carried."""

    def __init__(self, instance: dg.DagsterInstance, server_url: str) -> None:
        self.instance, self.cursor = instance, None
        self.sensor = build_new_crawl_sensor()
        self.resource = CommonCrawlResource(base_url=server_url + "/", collinfo_url=server_url + "/collinfo.json",
                                            backoff_s=0.01)
        self.run_keys: list[str] = []

    def tick(self):
        context = dg.build_sensor_context(instance=self.instance, cursor=self.cursor,
                                          resources={"common_crawl": self.resource})
        result = self.sensor(context)
        if isinstance(result, dg.SensorResult):
            for request in result.dynamic_partitions_requests or []:
                assert request.partitions_def_name == cc_snapshots.name
                self.instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
            partitions = set(self.partitions())
            for run in result.run_requests or []:
                assert run.partition_key in partitions  # a run only for a partition that exists by now
                self.run_keys.append(run.run_key)
            self.cursor = result.cursor
        return result

    def partitions(self) -> list[str]:
        return self.instance.get_dynamic_partitions(cc_snapshots.name)


def added(result) -> list[str]:
    return [k for r in result.dynamic_partitions_requests for k in r.partition_keys]


def test_crawl_order_matches_common_crawls_own_order_including_the_irregular_ids():
    assert sorted(REAL_IDS, key=crawl_sort_key, reverse=True) == REAL_IDS
    assert REAL_IDS[-3:] == IRREGULAR
    assert select_new_crawls(REAL_IDS, newest=2, from_year=0, known=[]) == ["CC-MAIN-2025-43", "CC-MAIN-2025-47"]
    assert select_new_crawls(REAL_IDS, newest=0, from_year=2025, known=["CC-MAIN-2025-47"])[-1] == "CC-MAIN-2025-43"
    # the 2009-2010 crawl counts from its first year
    assert select_new_crawls(REAL_IDS, newest=0, from_year=2009, known=[])[:2] == ["CC-MAIN-2009-2010", "CC-MAIN-2012"]
    assert select_new_crawls(REAL_IDS, newest=5, from_year=2030, known=[]) == []


def test_new_crawls_of_the_real_list_become_partitions_with_one_keyed_run_each(monkeypatch):
    use_filter(monkeypatch, newest=0, from_year=2025)
    expected = sorted((c for c in REAL_IDS if c.startswith("CC-MAIN-2025-")), key=crawl_sort_key)
    assert len(expected) == 11
    with FaultServer({"/collinfo.json": REAL_LIST}) as server, dg.instance_for_test() as instance:
        daemon = Daemon(instance, server.url)
        first = daemon.tick()
        assert added(first) == expected == daemon.partitions()  # oldest first: partitions keep crawl order
        runs = first.run_requests
        assert [r.partition_key for r in runs] == expected
        assert [r.run_key for r in runs] == [f"new-crawl-{c}" for c in expected]
        assert all(r.tags[NEW_CRAWL_TAG] == r.partition_key for r in runs)
        assert all(r.asset_selection is None for r in runs)  # the sensor's own target: raw_pairs
        assert [k.to_user_string() for k in defs.resolve_sensor_def("new_crawl_sensor").asset_selection.resolve(
            defs.resolve_asset_graph())] == ["raw_pairs"]

        second = daemon.tick()
        assert second.skip_reason is not None and "no new crawls among 118" in second.skip_reason.skip_message
        assert not second.dynamic_partitions_requests and not second.run_requests
        assert daemon.partitions() == expected

        # Common Crawl publishes a new crawl: only it is added, on the next tick.
        published = [{"id": "CC-MAIN-2025-51", "name": "December 2025 Index"}, *json.loads(REAL_LIST)]
        server.files["/collinfo.json"] = json.dumps(published).encode()
        third = daemon.tick()
        assert added(third) == ["CC-MAIN-2025-51"]
        assert [r.run_key for r in third.run_requests] == ["new-crawl-CC-MAIN-2025-51"]
        assert daemon.partitions() == [*expected, "CC-MAIN-2025-51"]
        assert len(daemon.run_keys) == len(set(daemon.run_keys)) == 12


def test_the_whole_list_including_the_irregular_early_ids_and_the_newest_n_filter(monkeypatch):
    use_filter(monkeypatch, newest=0, from_year=0)
    with FaultServer({"/collinfo.json": REAL_LIST}) as server, dg.instance_for_test() as instance:
        first = Daemon(instance, server.url).tick()
        keys = instance.get_dynamic_partitions(cc_snapshots.name)
        assert added(first) == keys == REAL_IDS[::-1] and len(keys) == 118
        assert keys[:3] == IRREGULAR[::-1] and all(validate_crawl_id(k) == k for k in keys)

    use_filter(monkeypatch, newest=3, from_year=0)
    with FaultServer({"/collinfo.json": REAL_LIST}) as server, dg.instance_for_test() as instance:
        daemon = Daemon(instance, server.url)
        assert added(daemon.tick()) == ["CC-MAIN-2025-38", "CC-MAIN-2025-43", "CC-MAIN-2025-47"]
        assert daemon.tick().skip_reason is not None


def test_a_crawl_list_that_fails_to_load_skips_with_a_reason_and_nothing_is_added_twice(monkeypatch):
    use_filter(monkeypatch, newest=2, from_year=0)
    with dg.instance_for_test() as instance:
        with FaultServer({"/collinfo.json": REAL_LIST}) as server:
            daemon = Daemon(instance, server.url)
            assert added(daemon.tick()) == ["CC-MAIN-2025-43", "CC-MAIN-2025-47"]
            cursor = daemon.cursor

            failures = {
                "500": (lambda: server.faults.status_first.extend([500, 500]), "HttpFetchError"),
                "garbage": (lambda: server.files.update({"/collinfo.json": b"<html>maintenance</html>"}), "not JSON"),
                "not a list": (lambda: server.files.update({"/collinfo.json": b'{"id": "CC-MAIN-2025-51"}'}),
                               "not a JSON list"),
                "bad id": (lambda: server.files.update({"/collinfo.json": b'[{"id": "CC-MAIN-25-51"}]'}),
                           "not a Common Crawl crawl id"),
                "no id": (lambda: server.files.update({"/collinfo.json": b'[{"name": "x"}]'}), "KeyError"),
            }
            for name, (break_it, message) in failures.items():
                break_it()
                result = daemon.tick()
                assert isinstance(result, dg.SkipReason), name
                assert "collinfo.json could not be read" in result.skip_message and message in result.skip_message, name
                assert daemon.cursor == cursor and len(daemon.partitions()) == 2, name
            # Half-read lists never count: the 500s were answered to both attempts of that tick.
            assert not server.faults.status_first
            server_url = server.url

        daemon.resource = CommonCrawlResource(base_url=server_url + "/", collinfo_url=server_url + "/collinfo.json",
                                              backoff_s=0.01)
        down = daemon.tick()  # the server is gone: connection refused
        assert isinstance(down, dg.SkipReason) and "could not be read" in down.skip_message
        assert daemon.cursor == cursor

        # Back up with a newer crawl, and one somebody already added by hand: only the new one gets a run.
        instance.add_dynamic_partitions(cc_snapshots.name, ["CC-MAIN-2025-51"])
        published = [{"id": "CC-MAIN-2026-04"}, {"id": "CC-MAIN-2025-51"}, *json.loads(REAL_LIST)]
        with FaultServer({"/collinfo.json": json.dumps(published).encode()}) as server:
            daemon.resource = CommonCrawlResource(base_url=server.url + "/", collinfo_url=server.url + "/collinfo.json")
            result = daemon.tick()
            assert added(result) == ["CC-MAIN-2026-04"]
            assert [r.partition_key for r in result.run_requests] == ["CC-MAIN-2026-04"]
            assert daemon.tick().skip_reason is not None
        partitions = daemon.partitions()
        assert sorted(partitions) == ["CC-MAIN-2025-43", "CC-MAIN-2025-47", "CC-MAIN-2025-51", "CC-MAIN-2026-04"]
        assert len(daemon.run_keys) == len(set(daemon.run_keys)) == 3


@pytest.mark.parametrize("newest,from_year", [(-1, 0), (1, -5)])
def test_filter_settings_are_validated(monkeypatch, newest, from_year):
    use_filter(monkeypatch, newest=newest, from_year=from_year)
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        get_settings()


SENSOR_TICKS = """
{
  sensorsOrError(repositorySelector: {repositoryLocationName: "danqing_assets", repositoryName: "__repository__"}) {
    ... on Sensors { results { name sensorState { status ticks(limit: 5) { status skipReason runIds } } } }
  }
}
"""


def test_the_daemon_of_dagster_dev_runs_both_sensors(tmp_path):
    """The real daemon ticks the sensors: new crawls become partitions with queued runs; automation is evaluated."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    # runs are queued, never launched: this test is about what the sensor asks for
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\nrun_queue:\n  max_concurrent_runs: 0\n")
    with FaultServer({"/collinfo.json": REAL_LIST}) as server:
        env = {"DANQING_DATA_DIR": str(tmp_path / "data"), "DANQING_CC_COLLINFO_URL": server.url + "/collinfo.json",
               "DANQING_NEW_CRAWL_SENSOR_RUNNING": "true", "DANQING_NEW_CRAWLS_NEWEST": "2"}
        with DagsterDev(home, env) as dev:
            deadline, sensors = time.monotonic() + 180, {}
            while time.monotonic() < deadline:
                results = dev.graphql(SENSOR_TICKS)["sensorsOrError"]["results"]
                sensors = {s["name"]: s["sensorState"] for s in results}
                new_crawl_ticks = sensors["new_crawl_sensor"]["ticks"]
                if any(t["runIds"] for t in new_crawl_ticks) and sensors["automation_condition_sensor"]["ticks"]:
                    break
                time.sleep(2)
            assert {name: state["status"] for name, state in sensors.items()} == {
                "new_crawl_sensor": "RUNNING", "automation_condition_sensor": "RUNNING"}, dev.log_tail()
            ticked = [t for t in sensors["new_crawl_sensor"]["ticks"] if t["runIds"]]
            assert ticked and ticked[-1]["status"] == "SUCCESS" and len(ticked[-1]["runIds"]) == 2, sensors
            automation_ticks = sensors["automation_condition_sensor"]["ticks"]
            assert automation_ticks and all(t["status"] != "FAILURE" for t in automation_ticks), sensors
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_dynamic_partitions(cc_snapshots.name) == ["CC-MAIN-2025-43", "CC-MAIN-2025-47"]
        runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/sensor_name": "new_crawl_sensor"}))
        assert sorted(r.tags["dagster/partition"] for r in runs) == ["CC-MAIN-2025-43", "CC-MAIN-2025-47"]
        assert all(r.status == dg.DagsterRunStatus.QUEUED for r in runs)
        assert all(r.asset_selection == {dg.AssetKey("raw_pairs")} for r in runs)
