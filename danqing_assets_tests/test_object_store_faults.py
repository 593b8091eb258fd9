"""The real S3 server stopped mid-run and started again: the run retries through it (or fails clearly and
the re-run completes), and the partition equals a clean run's, nothing lost or duplicated.

This test starts its own SeaweedFS (other ports, other data folder), so stopping it disturbs no other test.
"""

import time

from danqing_assets.resources.storage import LocalObjectStore
from danqing_assets.resources.storage_s3 import S3ObjectStore
from danqing_assets_tests.materialise_partition import finish, run_environment, start
from danqing_assets_tests.partition_digest import partition_digest, unreferenced_objects
from danqing_assets_tests.s3_server import S3Server

SNAPSHOT = "CC-MAIN-2026-08"
TIMEOUT_S = 300


def test_a_run_survives_an_s3_restart_and_equals_a_clean_run(tmp_path, sample_server):
    server = S3Server(tmp_path / "s3")
    server.start()
    try:
        s3 = {"DANQING_STORAGE_KIND": "s3", "DANQING_S3_ENDPOINT": server.endpoint, "DANQING_S3_BUCKET": "faults",
              "DANQING_S3_ACCESS_KEY": server.access_key, "DANQING_S3_SECRET_KEY": server.secret_key}  # fmt: skip
        env = run_environment(sample_server.port, tmp_path / "data", tmp_path / "unused", None, **s3)
        clean_env = run_environment(sample_server.port, tmp_path / "data-clean", tmp_path / "store-clean", None)
        store = S3ObjectStore(endpoint=server.endpoint, bucket="faults", access_key=server.access_key,
                              secret_key=server.secret_key, retry_max_s=60)  # fmt: skip
        log, clean_log = tmp_path / "s3-run.log", tmp_path / "clean.log"
        clean = start(clean_env, SNAPSHOT, ["raw_pairs"], clean_log)
        run = start(env, SNAPSHOT, ["raw_pairs"], log)
        deadline = time.monotonic() + TIMEOUT_S
        while not store.list(f"datasets/raw_pairs/{SNAPSHOT}/parts/"):
            assert run.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline
            time.sleep(0.05)
        server.stop()  # mid-run: the run's next writes meet a refused connection
        time.sleep(3)
        assert run.poll() is None  # still retrying, not crashed
        server.start()
        code = finish(run)
        if code != 0:  # allowed: a clear failure, then a re-run completes
            assert "StorageUnavailable" in log.read_text() or "unavailable" in log.read_text()
            code = finish(start(env, SNAPSHOT, ["raw_pairs"], log))
        assert code == 0, log.read_text()[-3000:]
        assert finish(clean) == 0, clean_log.read_text()[-3000:]
        clean_store = LocalObjectStore(tmp_path / "store-clean")
        assert partition_digest(store, "raw_pairs", SNAPSHOT) == partition_digest(clean_store, "raw_pairs", SNAPSHOT)
        assert unreferenced_objects(store) == []
        assert server.secret_key not in log.read_text()
    finally:
        server.stop()
