"""The code location as a person sees it: a real ``dagster dev`` answering GraphQL."""

import os

import dagster as dg

from danqing_assets.partitions import register_snapshots
from danqing_assets_tests.dagster_dev import DagsterDev, group_alive
from danqing_assets_tests.test_raw_pairs_asset import EXPECTED_ASSETS

ASSET_NODES = """
{
  assetNodes {
    assetKey { path }
    groupName
    isPartitioned
    partitionDefinition { name type }
    partitionKeysByDimension { name partitionKeys }
    dependencyKeys { path }
  }
}
"""


def test_dagster_dev_serves_raw_pairs_partitioned_by_snapshot(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\nnux:\n  enabled: false\n")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        register_snapshots(instance, ["CC-MAIN-2024-10", "CC-MAIN-2009-2010"])
    env = {"DANQING_DATA_DIR": str(tmp_path / "data")}
    server = DagsterDev(home, env)
    with server:
        nodes = {tuple(n["assetKey"]["path"]): n for n in server.graphql(ASSET_NODES)["assetNodes"]}
        assert {path[0] for path in nodes} == EXPECTED_ASSETS
        assert nodes[("text_filtered_pairs",)]["dependencyKeys"] == [{"path": ["raw_pairs"]}]
        raw = nodes[("raw_pairs",)]
        assert raw["isPartitioned"] and raw["groupName"] == "ingest"
        assert raw["partitionDefinition"] == {"name": "cc_snapshots", "type": "DYNAMIC"}
        assert raw["partitionKeysByDimension"][0]["partitionKeys"] == ["CC-MAIN-2024-10", "CC-MAIN-2009-2010"]
        pgid = os.getpgid(server.proc.pid)
    # stopped by process group: nothing of it is left
    assert not group_alive(pgid), "dagster dev left processes behind"
