"""Run a real ``dagster dev`` on 127.0.0.1 for a test, and stop it by process group."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]

# Started from a non-interactive shell, dagster dev ignores SIGINT and SIGTERM unless
# both are reset to their defaults before exec.
_EXEC_WITH_DEFAULT_SIGNALS = (
    "import os, signal, sys; "
    "signal.signal(signal.SIGINT, signal.SIG_DFL); signal.signal(signal.SIGTERM, signal.SIG_DFL); "
    "os.execvp(sys.argv[1], sys.argv[1:])"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def group_alive(pgid: int) -> bool:
    """Whether any live (non-zombie) process is left in a process group."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


class DagsterDev:
    def __init__(self, dagster_home: Path, env: dict[str, str] | None = None, log: Path | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dagster_home = dagster_home
        self.log = log or dagster_home / "dagster-dev.log"
        self.env = {**os.environ, **(env or {}), "DAGSTER_HOME": str(dagster_home), "PYTHONUNBUFFERED": "1"}
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 120) -> DagsterDev:
        dagster = str(Path(sys.executable).with_name("dagster"))
        cmd = [sys.executable, "-c", _EXEC_WITH_DEFAULT_SIGNALS, dagster, "dev", "-h", "127.0.0.1", "-p", str(self.port),
               "-w", str(REPO / "workspace.yaml")]
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(cmd, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dagster dev exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(self.url + "/server_info", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"dagster dev did not answer within {timeout_s}s:\n{self.log_tail()}")

    def graphql(self, query: str, variables: dict | None = None, timeout_s: float = 60) -> dict:
        response = httpx.post(self.url + "/graphql", json={"query": query, "variables": variables or {}}, timeout=timeout_s)
        response.raise_for_status()
        body = response.json()
        if body.get("errors"):
            raise AssertionError(f"GraphQL errors: {body['errors']}")
        return body["data"]

    def stop(self, timeout_s: float = 30) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        pgid = os.getpgid(self.proc.pid)
        os.killpg(pgid, signal.SIGTERM)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            self.proc.wait(10)
        # children (code server, daemon) share the group; make sure none outlives the test
        deadline = time.monotonic() + timeout_s
        while group_alive(pgid) and time.monotonic() < deadline:
            os.killpg(pgid, signal.SIGKILL)
            time.sleep(0.2)

    def log_tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""

    def __enter__(self) -> DagsterDev:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
