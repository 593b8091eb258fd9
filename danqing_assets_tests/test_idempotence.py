"""Idempotence and concurrency: the same partition materialised again, or twice at once, is the same bytes.

Runs are real processes (``materialise_partition``) on the sample crawl. The
byte-level comparison is :func:`partition_digest` (objects by content, manifest
canonical, timings left out): point it at the ``release`` asset once it exists.
"""


import dagster as dg
import pytest

from danqing_assets.resources.storage import LocalObjectStore
from danqing_assets_tests.materialise_partition import finish, run_environment, start
from danqing_assets_tests.partition_digest import partition_digest, unreferenced_objects

SNAPSHOT = "CC-MAIN-2026-08"
ASSETS = ["raw_pairs", "text_filtered_pairs", "text_rejected_pairs"]
FAST = {"DANQING_WARC_FILES_PER_SNAPSHOT": "1"}  # one WARC of the snapshot: the same code paths, a third of the time


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, sample_server):
    """One run into a fresh store: (environment, store, digests of every asset)."""
    root = tmp_path_factory.mktemp("idempotence")
    env = run_environment(sample_server.port, root / "data", root / "store", root / "dagster_home", **FAST)
    log = root / "runs.log"
    assert finish(start(env, SNAPSHOT, ASSETS, log), log) == 0, log.read_text()[-3000:]
    store = LocalObjectStore(root / "store")
    return env, store, log, {asset: partition_digest(store, asset, SNAPSHOT) for asset in ASSETS}


def test_materialising_a_partition_again_gives_byte_identical_results(first_run):
    env, store, log, digests = first_run
    assert finish(start(env, SNAPSHOT, ASSETS, log), log) == 0, log.read_text()[-3000:]
    for asset in ASSETS:
        assert partition_digest(store, asset, SNAPSHOT) == digests[asset], asset
    assert unreferenced_objects(store) == []  # the first run's parts were replaced, not kept beside


def test_the_digest_sees_a_changed_byte(first_run, tmp_path):
    _, store, _, digests = first_run
    copy = LocalObjectStore(tmp_path / "copy")
    for key in store.list("datasets/raw_pairs/"):
        copy.put_bytes(key, store.get_bytes(key))
    assert partition_digest(copy, "raw_pairs", SNAPSHOT) == digests["raw_pairs"]
    part = next(k for k in copy.list("datasets/raw_pairs/") if k.endswith(".parquet"))
    data = bytearray(copy.get_bytes(part))
    data[len(data) // 2] ^= 1
    copy.put_bytes(part, bytes(data))
    assert partition_digest(copy, "raw_pairs", SNAPSHOT) != digests["raw_pairs"]


def test_two_concurrent_runs_of_a_partition_leave_one_whole_result(first_run, tmp_path, sample_server):
    _, _, _, digests = first_run
    home = tmp_path / "dagster_home"  # one instance, as in a deployment: each run sees the other in flight
    env = run_environment(sample_server.port, tmp_path / "data", tmp_path / "store", home, **FAST)
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    procs = [start(env, SNAPSHOT, ["raw_pairs"], log) for log in logs]
    codes = [finish(proc, log) for proc, log in zip(procs, logs, strict=True)]
    outputs = [log.read_text() for log in logs]
    assert 0 in codes, outputs  # at least one wins; a loser fails with a clear message
    for code, output in zip(codes, outputs, strict=True):
        assert code == 0 or "cannot commit" in output or "RUN_FAILURE" in output or "FAILED" in output, output[-3000:]

    store = LocalObjectStore(tmp_path / "store")
    assert partition_digest(store, "raw_pairs", SNAPSHOT) == digests["raw_pairs"]
    with dg.DagsterInstance.from_config(str(home)) as instance:
        tags = {run.run_id[:8] for run in instance.get_runs()}
    leftovers = unreferenced_objects(store)  # checks every listed part exists
    # parts the other run still held when one committed may stay until the next commit; never foreign ones
    assert all(any(tag in key for tag in tags) for key in leftovers) and len(leftovers) <= 1
