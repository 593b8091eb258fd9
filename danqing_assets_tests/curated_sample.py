"""Session fixture: both sample snapshots curated once, end to end, later snapshot first.

Register with ``pytest_plugins = ["danqing_assets_tests.curated_sample"]``. Curating a snapshot
(download, decode, random-weight RN50 CLIP on CPU) is the slow part of many tests, so it happens
once per session; tests that change the store work on a copy (:meth:`CuratedSample.copy_store`).

The order is the hard one for cross-snapshot dedup: CC-MAIN-2026-17 is curated while
CC-MAIN-2026-08 is registered but not yet curated, then CC-MAIN-2026-08 is, then what the
automation condition would do — the later snapshot's index, release and the manifest are rebuilt.
"""

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import pytest

OLD, NEW = "CC-MAIN-2026-08", "CC-MAIN-2026-17"
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def pipeline_environment(server_port: int) -> dict[str, str]:
    """The demo's offline settings: sample crawl on loopback, random RN50 (band wide open, semantic dedup off)."""
    from danqing_assets.demo import sample_crawl_environment
    from danqing_assets.settings import Settings

    return {**sample_crawl_environment(server_port, Settings().sample_host_suffix),
            "DANQING_CLIP_ARCH": "RN50", "DANQING_CLIP_ALLOW_RANDOM_WEIGHTS": "true", "DANQING_CLIP_BATCH_SIZE": "32",
            "DANQING_CLIP_BAND_MIN": "-4", "DANQING_CLIP_BAND_MAX": "4", "DANQING_SEMANTIC_MAX_DISTANCE": "-1",
            "DANQING_BENCHMARK_SMOKE_PAIRS": "12"}


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables (and fresh settings) for the block only."""
    from danqing_assets.settings import get_settings

    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    get_settings.cache_clear()
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        get_settings.cache_clear()


def pipeline_resources(root: Path, server) -> dict:
    from danqing_assets.resources.clip import ClipModelResource
    from danqing_assets.resources.common_crawl import CommonCrawlResource
    from danqing_assets.resources.io_manager import ObjectStoreIOManager
    from danqing_assets.resources.storage import StorageResource

    storage = StorageResource(kind="local", root=str(root))
    return {"storage": storage, "io_manager": ObjectStoreIOManager(storage=storage),
            "common_crawl": CommonCrawlResource(base_url=server.base_url, collinfo_url=server.base_url + "collinfo.json"),
            "clip_model": ClipModelResource(arch="RN50", allow_random_weights=True, batch_size=32)}


def materialise(instance, root: Path, server, snapshot: str | None, selection=None, raise_on_error: bool = True):
    """Materialise (a selection of) every asset for one snapshot (None: a selection of unpartitioned assets)."""
    from danqing_assets.definitions import ALL_ASSETS

    result = dg.materialize(ALL_ASSETS, selection=selection, partition_key=snapshot, instance=instance,
                            resources=pipeline_resources(root, server), run_config=QUIET, raise_on_error=raise_on_error)
    if raise_on_error:
        assert result.success
    return result


def metadata_by_asset(result) -> dict[str, dict]:
    return {e.event_specific_data.materialization.asset_key.to_user_string(): e.event_specific_data.materialization.metadata
            for e in result.get_asset_materialization_events()}


@dataclass
class CuratedSample:
    root: Path
    server: object
    env: dict[str, str]
    steps: list[tuple[str, dict[str, dict]]] = field(default_factory=list)  # (what ran, metadata by asset)

    def store(self):
        from danqing_assets.resources.storage import LocalObjectStore

        return LocalObjectStore(self.root)

    def copy_store(self, dest: Path, ignore: tuple[str, ...] = ()) -> Path:
        shutil.copytree(self.root, dest, ignore=shutil.ignore_patterns(*ignore) if ignore else None)
        return dest


@pytest.fixture(scope="session")
def curated_sample(tmp_path_factory, sample_server) -> CuratedSample:
    from danqing_assets.partitions import register_snapshots

    root = tmp_path_factory.mktemp("curated-sample") / "store"
    sample = CuratedSample(root, sample_server, pipeline_environment(sample_server.port))
    data_dir = {"DANQING_DATA_DIR": str(root.parent / "data")}
    with environment({**sample.env, **data_dir}), dg.instance_for_test() as instance:
        register_snapshots(instance, [OLD, NEW])
        sample.steps.append((f"all {NEW}", metadata_by_asset(materialise(instance, root, sample_server, NEW))))
        sample.steps.append((f"all {OLD}", metadata_by_asset(materialise(instance, root, sample_server, OLD))))
        rebuilt = materialise(instance, root, sample_server, NEW, selection=["dedup_index", "release", "release_manifest"])
        sample.steps.append((f"rebuild {NEW}", metadata_by_asset(rebuilt)))
    return sample
