"""Soak: the whole graph, both sample snapshots, three times on one instance — same bytes, nothing left behind.

One WARC file per snapshot (``DANQING_WARC_FILES_PER_SNAPSHOT=1``) keeps a round
short; every asset runs, Chinese-CLIP included (a random-weight RN50, loudly so).
After each round every committed partition has the same digest as after the first;
after the last, this process has no more children, open files or temp files than
after the first round, and the store holds no orphan and no temp file.
"""

import os
import tempfile
from pathlib import Path

import dagster as dg

from danqing_assets.definitions import ALL_ASSETS, build_definitions
from danqing_assets.demo import sample_crawl_environment
from danqing_assets.partitions import register_snapshots
from danqing_assets.settings import get_settings
from danqing_assets_tests.partition_digest import index_digest, partition_digest, rows_digest, unreferenced_objects

SNAPSHOTS = ["CC-MAIN-2026-08", "CC-MAIN-2026-17"]
ROUNDS = 3
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


def children() -> set[int]:
    """Live descendants of this process, read from /proc (zombies count: nobody reaped them)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    found, frontier = set(), {os.getpid()}
    while frontier:
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier} - found
        found |= frontier
    return found


def open_files() -> set[str]:
    out = set()
    for fd in Path("/proc/self/fd").iterdir():
        try:
            out.add(os.readlink(fd))
        except OSError:
            pass
    return out


def temp_files(root: Path) -> set[str]:
    """Everything in this test's own temp folder, and temp names anywhere under ``root``."""
    names = {str(p) for p in Path(tempfile.gettempdir()).rglob("*")}
    return names | {str(p) for p in root.rglob("*") if ".tmp-" in p.name or p.name.endswith(".part")}


def digest(store, asset: str, snapshot: str) -> bytes:
    # dedup_index names the upstream versions it covers, which every round renews; a re-run of the download
    # carries the earlier shards and final failures over: those three are compared by content
    if asset == "dedup_index":
        return index_digest(store, snapshot)
    if asset in ("downloaded_images", "image_download_failures"):
        return rows_digest(store, asset, snapshot)
    return partition_digest(store, asset, snapshot)


def test_three_rounds_of_the_whole_graph_are_identical_and_leak_nothing(tmp_path, monkeypatch, sample_server):
    env = {**sample_crawl_environment(sample_server.port, get_settings().sample_host_suffix),
           "DANQING_STORAGE_ROOT": str(tmp_path / "store"), "DANQING_WARC_FILES_PER_SNAPSHOT": "1",
           "DANQING_CLIP_ARCH": "RN50", "DANQING_CLIP_ALLOW_RANDOM_WEIGHTS": "true", "DANQING_CLIP_BATCH_SIZE": "16",
           "DANQING_CLIP_BAND_MIN": "-4", "DANQING_CLIP_BAND_MAX": "4", "DANQING_SEMANTIC_MAX_DISTANCE": "-1"}  # fmt: skip
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # our temp files only, not other tests'
    get_settings.cache_clear()
    defs = build_definitions()
    store = defs.resources["storage"].store()
    # the release's own files are compared byte for byte below
    keys = [k.to_user_string() for a in ALL_ASSETS if a.partitions_def is not None for k in a.keys
            if k.to_user_string() != "release"]
    digests, after_first = None, None
    with dg.instance_for_test() as instance:
        register_snapshots(instance, SNAPSHOTS)
        for round_ in range(ROUNDS):
            for snapshot in SNAPSHOTS:
                result = dg.materialize(ALL_ASSETS, partition_key=snapshot, instance=instance,
                                        resources=defs.resources, run_config=QUIET)  # fmt: skip
                assert result.success
            now = {(k, s): digest(store, k, s) for k in keys for s in SNAPSHOTS}
            now.update({("releases", k): store.get_bytes(k) for k in store.list("releases/")})
            assert any(k == "releases" for k, _ in now)
            if digests is None:
                digests = now
                after_first = (children(), open_files(), temp_files(tmp_path))
                assert any(b'"rows":0' not in d for d in now.values())
            else:
                changed = [key for key in now if now[key] != digests[key]]
                assert changed == [], f"round {round_ + 1} differs from round 1 in {changed}"
            assert unreferenced_objects(store) == []
    kids, files, temps = children(), open_files(), temp_files(tmp_path)
    assert kids <= after_first[0], f"new child processes left running: {kids - after_first[0]}"
    leaked = {f for f in files - after_first[1] if not f.startswith(("pipe:", "socket:", "anon_inode:"))}
    assert leaked == set(), f"files left open: {leaked}"
    assert len(files) <= len(after_first[1]) + 4  # pipes and sockets: no steady growth
    assert temps <= after_first[2], f"temp files left behind: {temps - after_first[2]}"
    assert not [p for p in (tmp_path / "store").rglob("*") if ".tmp-" in p.name]
