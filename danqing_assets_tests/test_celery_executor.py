"""The Celery executor: a sample snapshot through real Redis and two real workers, data over real S3.

One worker listens on the CPU queue, one on ``gpu``; the run is launched like an operator
would (``dagster job execute`` in its own process), and every step's worker is read back
from the run's event log: the Celery node that took the task, and the process that ran it.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import yaml
from celery import Celery

from danqing_assets.celery_executor import (
    CELERY_CPU_QUEUE,
    CELERY_JOB_NAME,
    build_celery_job,
    celery_executor_config,
    write_worker_config,
)
from danqing_assets.gpu import CELERY_GPU_QUEUE, GPU_TAG
from danqing_assets.partitions import register_snapshots
from danqing_assets.resources.tables import load_manifest
from danqing_assets.settings import Settings, get_settings
from danqing_assets_tests.celery_services import CeleryWorker, RedisServer
from danqing_assets_tests.dagster_dev import REPO

SNAPSHOT = "CC-MAIN-2026-08"
DATASET_ASSETS = ["raw_pairs", "text_filtered_pairs", "downloaded_images", "image_filtered_pairs", "clip_embeddings",
                  "clip_filtered_pairs"]


def test_executor_and_worker_config_come_from_the_same_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("DANQING_CELERY_BROKER_URL", "redis://:s3cret@broker.internal:6379/0")
    monkeypatch.setenv("DANQING_CELERY_BACKEND_URL", "redis://:s3cret@broker.internal:6379/1")
    get_settings.cache_clear()
    config = celery_executor_config()
    # the executor names the variables, so the password never reaches the run config shown in the UI
    assert config["broker"] == {"env": "DANQING_CELERY_BROKER_URL"}
    assert config["backend"] == {"env": "DANQING_CELERY_BACKEND_URL"}
    worker = yaml.safe_load(write_worker_config(tmp_path / "celery.yaml").read_text())["execution"]["config"]
    assert worker["broker"] == "redis://:s3cret@broker.internal:6379/0"
    assert worker["backend"] == "redis://:s3cret@broker.internal:6379/1"
    assert worker["config_source"] == config["config_source"]

    from dagster_celery.cli import get_validated_config  # what `dagster-celery worker start -y` checks

    assert get_validated_config(str(tmp_path / "celery.yaml"))["broker"] == worker["broker"]


def test_the_celery_job_covers_every_asset_and_routes_only_gpu_ops_to_the_gpu_queue():
    from danqing_assets.definitions import ALL_ASSETS, defs

    job = defs.resolve_job_def(CELERY_JOB_NAME)
    assert job.executor_def.name == "danqing_celery"
    assert job.partitions_def is not None and job.partitions_def.name == "cc_snapshots"
    wanted = {key for asset in ALL_ASSETS for key in asset.keys}
    assert wanted <= set(job.asset_layer.executable_asset_keys)
    queues = {op.name: op.tags.get("dagster-celery/queue", CELERY_CPU_QUEUE) for op in job.all_node_defs
              if isinstance(op, dg.OpDefinition)}
    assert queues["clip_embeddings"] == CELERY_GPU_QUEUE
    assert {op for op, q in queues.items() if q == CELERY_GPU_QUEUE} == {
        op.name for op in job.all_node_defs if isinstance(op, dg.OpDefinition) and op.tags.get(GPU_TAG) == "true"}
    assert build_celery_job().name == CELERY_JOB_NAME


@pytest.fixture
def celery_cluster(tmp_path, s3_server, s3_store, sample_server):
    """Redis, one CPU worker and one GPU worker, all sharing the environment of the run."""
    from danqing_assets.demo import sample_crawl_environment

    home = tmp_path / "dagster_home"
    home.mkdir()
    # sqlite instance on a path every process of this machine reads: the run, its events, the partitions
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    # create its databases before the workers start: two processes initialising one fresh sqlite
    # instance at once race on the schema stamp ("alembic_version has more than one head")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        register_snapshots(instance, [SNAPSHOT])
    workdir = tmp_path / "celery"
    workdir.mkdir()
    redis_server = RedisServer(workdir)
    workers: list[CeleryWorker] = []
    try:
        redis_server.start()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DANQING_", "DAGSTER_"))}
        env.update({
            "DAGSTER_HOME": str(home),
            "DANQING_DATA_DIR": str(tmp_path / "data"),
            "DANQING_STORAGE_KIND": "s3",
            "DANQING_S3_ENDPOINT": s3_server.endpoint,
            "DANQING_S3_BUCKET": s3_store.bucket,
            "DANQING_S3_ACCESS_KEY": s3_server.access_key,
            "DANQING_S3_SECRET_KEY": s3_server.secret_key,
            "DANQING_S3_REGION": s3_server.region,
            "DANQING_CELERY_BROKER_URL": redis_server.url(0),
            "DANQING_CELERY_BACKEND_URL": redis_server.url(1),
            # a small RANDOM-WEIGHT Chinese-CLIP (no download); its scores mean nothing, so the band is wide open
            "DANQING_CLIP_ARCH": "RN50",
            "DANQING_CLIP_ALLOW_RANDOM_WEIGHTS": "true",
            "DANQING_CLIP_BATCH_SIZE": "32",
            "DANQING_CLIP_BAND_MIN": "-4",
            "DANQING_CLIP_BAND_MAX": "4",
            "DANQING_SEMANTIC_MAX_DISTANCE": "-1",
            **sample_crawl_environment(sample_server.port, get_settings().sample_host_suffix),
        })
        config_yaml = write_worker_config(workdir / "celery.yaml", Settings(
            celery_broker_url=env["DANQING_CELERY_BROKER_URL"], celery_backend_url=env["DANQING_CELERY_BACKEND_URL"]))
        workers = [CeleryWorker("cpu", CELERY_CPU_QUEUE, config_yaml, env, workdir),
                   CeleryWorker("gpu", CELERY_GPU_QUEUE, config_yaml, env, workdir, pool="solo")]
        for worker in workers:
            worker.start()
        app = Celery(broker=redis_server.url(0), backend=redis_server.url(1))
        for worker in workers:
            worker.wait_ready(app)
        yield {"env": env, "home": home, "workers": {w.queue: w for w in workers}, "store": s3_store,
               "data_dir": tmp_path / "data"}
    finally:
        for worker in workers:
            worker.stop()
        redis_server.stop()


def _process_group(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[2])


def test_a_sample_snapshot_runs_on_celery_workers_gpu_steps_only_on_the_gpu_worker(celery_cluster):
    env, home, store = celery_cluster["env"], celery_cluster["home"], celery_cluster["store"]
    cpu_worker, gpu_worker = celery_cluster["workers"][CELERY_CPU_QUEUE], celery_cluster["workers"][CELERY_GPU_QUEUE]
    run_config = home / "quiet.yaml"
    run_config.write_text(yaml.safe_dump({"loggers": {"console": {"config": {"log_level": "WARNING"}}}}))
    dagster = str(Path(sys.executable).with_name("dagster"))
    launch = subprocess.run(
        [dagster, "job", "execute", "-m", "danqing_assets.definitions", "-a", "defs", "-j", CELERY_JOB_NAME,
         "-c", str(run_config), "--tags", json.dumps({"dagster/partition": SNAPSHOT})],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=420, start_new_session=True)
    logs = (f"\n--- launcher ---\n{launch.stdout[-3000:]}{launch.stderr[-3000:]}\n--- cpu worker ---\n"
            f"{cpu_worker.log_tail()}\n--- gpu worker ---\n{gpu_worker.log_tail()}")
    assert launch.returncode == 0, logs

    with dg.DagsterInstance.from_config(str(home)) as instance:
        (run,) = instance.get_runs()
        assert run.status == dg.DagsterRunStatus.SUCCESS and run.job_name == CELERY_JOB_NAME, logs
        records = instance.all_logs(run.run_id)
        # the tags of every step as the run planned it; a dynamic step's copies share its planned key "op[?]"
        plan = instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
        step_tags = {step.key.split("[")[0]: step.tags or {} for step in plan.steps}

    # the Celery node that took each step's task (dagster-celery reports it from inside the task)
    node_of_step = {}
    for record in records:
        event = record.dagster_event
        if event and event.event_type == dg.DagsterEventType.ENGINE_EVENT and "in celery worker" in record.message:
            node_of_step[event.step_key] = event.event_specific_data.metadata["Celery worker"].text
    started = {r.step_key: r.dagster_event.pid for r in records
               if r.dagster_event and r.dagster_event.event_type == dg.DagsterEventType.STEP_START}
    succeeded = {r.step_key for r in records
                 if r.dagster_event and r.dagster_event.event_type == dg.DagsterEventType.STEP_SUCCESS}
    assert started and set(started) == set(node_of_step) == succeeded, logs

    gpu_steps = {s for s in started if step_tags[s.split("[")[0]].get(GPU_TAG) == "true"}
    assert "clip_embeddings" in gpu_steps
    for step, pid in started.items():
        worker = gpu_worker if step in gpu_steps else cpu_worker
        assert node_of_step[step] == worker.hostname, f"{step} ran on {node_of_step[step]}, not {worker.hostname}"
        # and the process that ran it belongs to that worker (its pool child, in the worker's process group)
        assert _process_group(pid) == worker.pgid, f"{step} ran in pid {pid}, outside worker {worker.name}"
    cpu_steps = set(started) - gpu_steps
    assert any(s.startswith("raw_pairs.extract_shard_pairs[") for s in cpu_steps)  # dynamic fan-out ran too

    # steps handed each other data through S3 only: every partition is in the bucket, nothing on local disk
    manifests = {asset: load_manifest(store, asset, SNAPSHOT) for asset in DATASET_ASSETS}
    assert all(m is not None and m.rows > 0 for m in manifests.values()), manifests
    assert manifests["clip_embeddings"].rows == manifests["image_filtered_pairs"].rows
    assert manifests["clip_embeddings"].stats["random_weights"] is True
    assert any(key.startswith("_dagster_io/") for key in store.list(""))
    assert not (celery_cluster["data_dir"] / "store").exists()
