"""The embedded default: the whole pipeline on the bundled sample crawl, offline.

``danqing-demo`` builds the sample Common Crawl mirror, serves it on 127.0.0.1,
registers its snapshots as partitions, materialises every asset for each of them
into the local object store (recorded in ``<data_dir>/dagster_home`` so the web
UI shows the runs), and prints the funnel. ``danqing-demo ui`` serves the mirror
and opens the Dagster web UI on the same instance.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import dagster as dg

from .funnel import format_funnel, funnel_rows
from .partitions import register_snapshots
from .settings import get_settings

QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def _say(message: str) -> None:
    print(message, flush=True)


def _prepare_dagster_home(data_dir: Path) -> Path:
    home = Path(os.environ.get("DAGSTER_HOME") or data_dir / "dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text("telemetry:\n  enabled: false\nnux:\n  enabled: false\n")
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def sample_crawl_environment(port: int, host_suffix: str) -> dict[str, str]:
    """Settings that point the pipeline at a local sample-crawl server.

    The sample pages name image hosts under ``host_suffix``; they resolve to the
    server, and the SSRF guard admits exactly that loopback port and no other.
    """
    return {
        "DANQING_CC_BASE_URL": f"http://127.0.0.1:{port}/",
        "DANQING_HOST_OVERRIDES": f"*{host_suffix}=127.0.0.1:{port}",
        "DANQING_NETWORK_ALLOWLIST": f"127.0.0.1:{port}",
    }


@contextmanager
def _sample_crawl(data_dir: Path):
    """Build the sample mirror, serve it, and point the settings at it."""
    from .sample_crawl import SampleCrawlServer, build_sample_mirror

    started = time.perf_counter()
    mirror = build_sample_mirror(data_dir / "sample-crawl")
    _say(f"sample crawl: {len(mirror.snapshots)} snapshots built in {time.perf_counter() - started:.1f}s at {mirror.root}")
    with SampleCrawlServer(mirror.root) as server:
        os.environ.update(sample_crawl_environment(server.port, get_settings().sample_host_suffix))
        os.environ.pop("DANQING_CC_COLLINFO_URL", None)
        get_settings.cache_clear()
        _say(f"sample crawl served at {server.base_url} (127.0.0.1 only)")
        try:
            yield mirror
        finally:
            get_settings.cache_clear()


def _demo_clip_defaults() -> None:
    """Without configured weights the demo runs a small random Chinese-CLIP, and says so."""
    settings = get_settings()
    if settings.clip_checkpoint or settings.clip_download_root:
        return
    os.environ.setdefault("DANQING_CLIP_ARCH", "RN50")
    os.environ["DANQING_CLIP_ALLOW_RANDOM_WEIGHTS"] = "true"
    # random scores mean nothing: the band would drop at random, so it is opened wide
    os.environ["DANQING_CLIP_BAND_MIN"] = "-4"
    os.environ["DANQING_CLIP_BAND_MAX"] = "4"
    os.environ["DANQING_SEMANTIC_MAX_DISTANCE"] = "-1"  # a random model embeds every image alike
    get_settings.cache_clear()
    _say("NOTE: no Chinese-CLIP checkpoint configured (DANQING_CLIP_CHECKPOINT): the demo embeds with a RANDOMLY "
         "INITIALISED RN50 model. CLIP scores are meaningless, so the band is opened and semantic dedup is off.")


def run_pipeline() -> int:
    _demo_clip_defaults()
    settings = get_settings()
    data_dir = settings.data_dir.resolve()
    home = _prepare_dagster_home(data_dir)
    progress = logging.getLogger("danqing_assets.progress")
    progress.addHandler(logging.StreamHandler(sys.stdout))
    progress.setLevel(logging.INFO)
    with _sample_crawl(data_dir):
        from .definitions import ALL_ASSETS, build_definitions
        from .resources.common_crawl import CommonCrawlResource

        defs = build_definitions()
        with CommonCrawlResource.from_settings().client() as client:
            snapshots = sorted(c.id for c in client.list_crawls())
        with dg.DagsterInstance.get() as instance:
            added = register_snapshots(instance, snapshots)
            _say(f"partitions: {', '.join(snapshots)} ({len(added)} new)")
            for snapshot in snapshots:
                _say(f"\n== materialising {len(ALL_ASSETS)} assets for {snapshot}")
                started = time.perf_counter()
                result = dg.materialize(ALL_ASSETS, partition_key=snapshot, instance=instance,
                                        resources=defs.resources, run_config=QUIET_RUN_CONFIG, raise_on_error=False)
                if not result.success:
                    _say(f"run {result.run_id} for {snapshot} FAILED; see the run in the UI")
                    return 1
                _say(f"== {snapshot} done in {time.perf_counter() - started:.1f}s (run {result.run_id})")
        store = defs.resources["storage"].store()
        random_note = " — CLIP scores are from RANDOM weights" if get_settings().clip_allow_random_weights else ""
        _say(f"\nFunnel (pairs kept per stage{random_note}):\n" + format_funnel(funnel_rows(store, snapshots), snapshots))
    release = f"releases/{get_settings().release_version}"
    _say(
        f"\nOutputs: {store.uri('datasets')}\n"
        f"Release: {store.uri(release + '/manifest.json')} (dataset card: {store.uri(release + '/README.md')})\n"
        f"Dagster instance: {home}\n"
        "Web UI:  .venv/bin/danqing-demo ui   (then open http://127.0.0.1:3000)"
    )
    return 0


def run_ui(port: int) -> int:
    settings = get_settings()
    data_dir = settings.data_dir.resolve()
    _prepare_dagster_home(data_dir)
    _demo_clip_defaults()
    repo = Path(__file__).resolve().parents[1]
    with _sample_crawl(data_dir):
        dagster = str(Path(sys.executable).with_name("dagster"))
        cmd = [dagster, "dev", "-h", "127.0.0.1", "-p", str(port), "-w", str(repo / "workspace.yaml")]
        _say(f"Dagster web UI on http://127.0.0.1:{port} (Ctrl-C to stop)")
        try:
            return subprocess.call(cmd, cwd=repo)
        except KeyboardInterrupt:
            return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="danqing-demo", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("run", help="materialise every asset for the sample snapshots (default)")
    ui = sub.add_parser("ui", help="serve the sample crawl and open the Dagster web UI")
    ui.add_argument("--port", type=int, default=3000)
    args = parser.parse_args(argv)
    if args.command == "ui":
        return run_ui(args.port)
    return run_pipeline()


if __name__ == "__main__":
    sys.exit(main())
