"""The Dagster code location: ``dagster dev`` (through workspace.yaml) serves these Definitions."""

from __future__ import annotations

import dagster as dg

from .assets.benchmark_results import benchmark_results
from .assets.clip_embeddings import clip_embeddings
from .assets.clip_filtered_pairs import clip_filtered_pairs
from .assets.dedup_index import dedup_index
from .assets.downloaded_images import downloaded_images
from .assets.image_filtered_pairs import image_filtered_pairs
from .assets.raw_pairs import raw_pairs
from .assets.release import release, release_manifest, takedown_list
from .assets.text_filtered_pairs import text_filtered_pairs
from .celery_executor import build_celery_job
from .gpu import default_executor
from .resources.clip import ClipModelResource
from .resources.common_crawl import CommonCrawlResource
from .resources.io_manager import ObjectStoreIOManager
from .resources.storage import StorageResource
from .sensors import build_sensors
from .settings import get_settings


# Every asset, in pipeline order.
ALL_ASSETS = [raw_pairs, text_filtered_pairs, downloaded_images, image_filtered_pairs, clip_embeddings, clip_filtered_pairs,
              dedup_index, takedown_list, release, release_manifest, benchmark_results]


def build_definitions() -> dg.Definitions:
    """Definitions wired to the current settings (environment variables ``DANQING_*``)."""
    storage = StorageResource.from_settings()
    return dg.Definitions(
        assets=ALL_ASSETS,
        resources={
            "storage": storage,
            "common_crawl": CommonCrawlResource.from_settings(),
            "clip_model": ClipModelResource.from_settings(),
            "io_manager": ObjectStoreIOManager(storage=storage),
        },
        executor=default_executor(get_settings().executor),
        jobs=[build_celery_job()],  # the same assets on Celery workers (CPU queue + gpu queue)
        sensors=build_sensors(),  # new crawls → partitions + runs; automation conditions
    )


defs = build_definitions()
