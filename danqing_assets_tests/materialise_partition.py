"""Materialise assets for one snapshot in a process of its own, the way a run worker does.

Reliability tests run this as a subprocess so they can SIGKILL it mid-run, stop the
object store under it, or start two at once. Everything comes from the environment:
``DANQING_*`` settings (store, crawl mirror, CLIP) and ``DAGSTER_HOME`` (the instance;
an ephemeral one without it).

    python -m danqing_assets_tests.materialise_partition CC-MAIN-2026-08 raw_pairs text_filtered_pairs

Exit status 0 when the run succeeded, 1 when it failed (the failure is printed).
"""

import os
import signal
import subprocess
import sys
from pathlib import Path

import dagster as dg

QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


def run_environment(server_port: int, data_dir: Path, store_root: Path, dagster_home: Path | None, **extra: str) -> dict[str, str]:
    """The environment of a worker process: the sample crawl at ``server_port``, a local store, an instance."""
    from danqing_assets.demo import sample_crawl_environment
    from danqing_assets.settings import Settings

    env = {k: v for k, v in os.environ.items() if not k.startswith("DANQING_") and k != "DAGSTER_HOME"}
    env.update(sample_crawl_environment(server_port, Settings().sample_host_suffix))
    env.update(DANQING_DATA_DIR=str(data_dir), DANQING_STORAGE_ROOT=str(store_root), **extra)
    if dagster_home is not None:
        dagster_home.mkdir(parents=True, exist_ok=True)
        (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        env["DAGSTER_HOME"] = str(dagster_home)
        # create the instance's SQLite schema now: two workers creating it at once can leave two alembic heads
        with dg.DagsterInstance.from_config(str(dagster_home)):
            pass
    return env


def start(env: dict[str, str], snapshot: str, assets: list[str], log: Path) -> subprocess.Popen:
    """This module in a new process group (so a test can kill it and everything it started)."""
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", __name__, snapshot, *assets], env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                cwd=Path(__file__).resolve().parents[1])  # fmt: skip


def finish(proc: subprocess.Popen, log: Path | None = None, timeout_s: float = 300) -> int:
    """The exit status of a run from :func:`start`; one still going after ``timeout_s`` (or when the wait is
    interrupted) is killed with its process group, and the test fails with the end of its log."""
    try:
        return proc.wait(timeout_s)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            import pytest

            pytest.fail(f"run did not finish in {timeout_s} s:\n{log.read_text()[-3000:] if log else ''}")


def main(argv: list[str]) -> int:
    from danqing_assets.definitions import ALL_ASSETS, build_definitions
    from danqing_assets.partitions import register_snapshots

    snapshot, selection = argv[0], argv[1:] or None
    defs = build_definitions()
    instance = dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else dg.DagsterInstance.ephemeral()
    with instance:
        register_snapshots(instance, [snapshot])
        result = dg.materialize(ALL_ASSETS, selection=selection, partition_key=snapshot, instance=instance,
                                resources=defs.resources, run_config=QUIET, raise_on_error=False)  # fmt: skip
        print(f"run {result.run_id} {'succeeded' if result.success else 'FAILED'}", flush=True)
        if not result.success:
            for event in result.all_events:
                if event.is_failure:
                    print(event.message, flush=True)
        return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
