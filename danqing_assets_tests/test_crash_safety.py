"""A run SIGKILLed mid-write, then re-run: the result equals an uninterrupted run's, byte for byte.

The run is a real process (``materialise_partition``) on a real Dagster instance
(``DAGSTER_HOME``), reading the sample crawl over HTTP and writing a local store.
It is killed as soon as ``raw_pairs`` has written a part, i.e. between the shard
steps and the commit, while further parquet files are being written.
"""

import os
import signal
import time

import dagster as dg

from danqing_assets.resources.storage import LocalObjectStore
from danqing_assets.resources.tables import load_manifest, read_table
from danqing_assets_tests.materialise_partition import run_environment, start
from danqing_assets_tests.partition_digest import partition_digest, unreferenced_objects

SNAPSHOT = "CC-MAIN-2026-08"
ASSETS = ["raw_pairs", "text_filtered_pairs", "text_rejected_pairs"]
TIMEOUT_S = 300  # the machine is shared: generous


def wait(proc, log) -> None:
    try:
        assert proc.wait(TIMEOUT_S) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_a_killed_run_leaves_nothing_that_looks_complete_and_a_rerun_equals_a_clean_run(tmp_path, sample_server):
    home = tmp_path / "dagster_home"
    killed_env = run_environment(sample_server.port, tmp_path / "data", tmp_path / "store", home)
    clean_env = run_environment(sample_server.port, tmp_path / "data-clean", tmp_path / "store-clean", None)
    store, clean_store = LocalObjectStore(tmp_path / "store"), LocalObjectStore(tmp_path / "store-clean")
    log, clean_log = tmp_path / "killed.log", tmp_path / "clean.log"

    clean = start(clean_env, SNAPSHOT, ASSETS, clean_log)  # the reference, in parallel
    victim = start(killed_env, SNAPSHOT, ASSETS, log)
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while not store.list(f"datasets/raw_pairs/{SNAPSHOT}/parts/"):
            assert victim.poll() is None, f"the run ended before it could be killed:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, "no part was written"
            time.sleep(0.02)
    finally:
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait()

    # Killed: no partition is visible, nothing half-written is listed, the run's parts are orphans.
    assert load_manifest(store, "raw_pairs", SNAPSHOT) is None
    orphans = unreferenced_objects(store)
    assert orphans and all(k.startswith(f"datasets/raw_pairs/{SNAPSHOT}/parts/") for k in orphans)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        [run] = instance.get_runs()
        assert run.status == dg.DagsterRunStatus.STARTED  # SIGKILL: nobody could record the end
        # what Dagster's run monitoring does when a run worker dies
        instance.report_run_failed(run, "run worker was killed (SIGKILL) by the crash-safety test")

    rerun = start(killed_env, SNAPSHOT, ASSETS, log)
    wait(rerun, log)
    wait(clean, clean_log)

    assert unreferenced_objects(store) == []  # the killed run's parts went with the re-run's commit
    for asset in ASSETS:
        assert partition_digest(store, asset, SNAPSHOT) == partition_digest(clean_store, asset, SNAPSHOT), asset
    pairs = read_table(store, load_manifest(store, "raw_pairs", SNAPSHOT))
    reference = read_table(clean_store, load_manifest(clean_store, "raw_pairs", SNAPSHOT))
    assert pairs.height > 100 and pairs.equals(reference)
    # no pair counted twice: every row is one (WARC record, image) of the crawl
    assert pairs.select("warc_path", "warc_offset", "url", "alt_text").n_unique() == pairs.height
    kept = read_table(store, load_manifest(store, "text_filtered_pairs", SNAPSHOT))
    assert kept.height > 100 and kept["uid"].n_unique() == kept.height
