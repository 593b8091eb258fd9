"""The Celery executor of the code location: CPU steps on one queue, GPU steps on ``gpu``.

Job ``curation_celery`` materialises every asset of a snapshot through Celery
workers (``dagster-celery``, Redis as broker and result backend). Steps without a
queue tag go to :data:`CELERY_CPU_QUEUE`; GPU steps carry ``dagster-celery/queue:
gpu`` (:func:`danqing_assets.gpu.gpu_op_tags`) and run only on workers started
with ``-q gpu``.

Workers import the code location themselves, so they need the same environment
as the process that launches the run: every ``DANQING_*`` setting (S3 storage:
steps hand each other data only through the object store) and the same
``DAGSTER_HOME`` (Celery tasks write their events to the run's instance).
``write_worker_config`` writes the ``-y`` file of ``dagster-celery worker start``
from the same settings as the executor, so the two cannot disagree::

    python -m danqing_assets.celery_executor celery.yaml
    dagster-celery worker start -A dagster_celery.app -y celery.yaml -q dagster -n cpu
    dagster-celery worker start -A dagster_celery.app -y celery.yaml -q gpu -n gpu -- --concurrency=1 --pool=solo

The GPU worker runs tasks in its own process (``--pool=solo``): prefork pool children
are daemonic, and the CLIP step's image loader cannot start processes from one.
With a SQLite ``DAGSTER_HOME`` the workers must be on the launching machine, and the
instance must exist before they start; elsewhere use PostgreSQL.
"""

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
import yaml
from dagster_celery import celery_executor

from .settings import Settings, get_settings

if TYPE_CHECKING:
    from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

# dagster-celery's default queue: every step without a ``dagster-celery/queue`` tag.
CELERY_CPU_QUEUE = "dagster"
CELERY_JOB_NAME = "curation_celery"

_ENV_BROKER = "DANQING_CELERY_BROKER_URL"
_ENV_BACKEND = "DANQING_CELERY_BACKEND_URL"


def _url_or_env(value: str, env_name: str) -> str | dict[str, str]:
    """A URL set through the environment is passed by name, so a password in it never shows in the UI."""
    return {"env": env_name} if os.environ.get(env_name) == value else value


def celery_executor_config(settings: Settings | None = None, *, resolve_env: bool = False) -> dict:
    """The executor's config: broker and backend from the settings.

    ``resolve_env`` writes the URLs themselves (for a worker's config file) instead
    of the names of the variables that hold them.
    """
    settings = settings or get_settings()
    broker, backend = settings.celery_broker_url, settings.celery_backend_url
    return {
        "broker": broker if resolve_env else _url_or_env(broker, _ENV_BROKER),
        "backend": backend if resolve_env else _url_or_env(backend, _ENV_BACKEND),
        # dagster-celery already makes workers take one task at a time (prefetch 1)
        "config_source": {"broker_connection_retry_on_startup": True},
    }


def write_worker_config(path: Path | str, settings: Settings | None = None) -> Path:
    """The ``-y`` file of ``dagster-celery worker start``: the executor's own config."""
    path = Path(path)
    path.write_text(yaml.safe_dump({"execution": {"config": celery_executor_config(settings, resolve_env=True)}}))
    return path


def build_celery_executor(settings: Settings | None = None) -> dg.ExecutorDefinition:
    return celery_executor.configured(celery_executor_config(settings), name="danqing_celery")


def build_celery_job(settings: Settings | None = None) -> "UnresolvedAssetJobDefinition":
    """Every asset of one snapshot (partitions cc_snapshots, inferred from the assets), each step on a Celery
    worker of its queue."""
    return dg.define_asset_job(
        CELERY_JOB_NAME,
        selection=dg.AssetSelection.all(),
        executor_def=build_celery_executor(settings),
        description="Every asset of a snapshot on Celery workers: CPU steps on queue 'dagster', GPU steps on 'gpu'.",
    )


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m danqing_assets.celery_executor WORKER_CONFIG.yaml")
    print(f"wrote {write_worker_config(sys.argv[1])}")
