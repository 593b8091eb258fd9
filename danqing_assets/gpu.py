"""The one place that routes steps to GPU workers.

Every GPU step gets the same tags, which each executor reads in its own way:
- Dagster's concurrency pool ``gpu`` limits GPU steps across runs
  (``dagster instance concurrency set gpu 1``);
- the local multiprocess executor limits steps tagged ``danqing/gpu`` within a run
  (see :data:`executor`): at most one at a time;
- Celery sends them to the ``gpu`` queue (``dagster-celery/queue``);
- Kubernetes gives their pod one ``nvidia.com/gpu`` (``dagster-k8s/config``).
"""

from __future__ import annotations

import json

import dagster as dg

GPU_POOL = "gpu"
GPU_TAG = "danqing/gpu"
CELERY_GPU_QUEUE = "gpu"

K8S_GPU_CONFIG = {
    "container_config": {"resources": {"limits": {"nvidia.com/gpu": "1"}, "requests": {"nvidia.com/gpu": "1"}}},
    "pod_spec_config": {"tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]},
}


def gpu_op_tags() -> dict[str, str]:
    """Tags that mark a step as needing a GPU, for every executor we support."""
    return {
        GPU_TAG: "true",
        "dagster-celery/queue": CELERY_GPU_QUEUE,
        "dagster-k8s/config": json.dumps(K8S_GPU_CONFIG),
    }


# The local executor: parallel CPU steps, one GPU step at a time.
executor = dg.multiprocess_executor.configured(
    {"tag_concurrency_limits": [{"key": GPU_TAG, "value": "true", "limit": 1}]}, name="danqing_multiprocess"
)


def default_executor(kind: str) -> dg.ExecutorDefinition:
    """The code location's default executor (``DANQING_EXECUTOR``): ``multiprocess`` or ``k8s``.

    Under ``k8s`` every step is its own Kubernetes Job, built from the step's ``dagster-k8s/config``
    tag, so the GPU steps (and only they) get ``nvidia.com/gpu``.
    """
    if kind == "multiprocess":
        return executor
    if kind == "k8s":
        try:
            from dagster_k8s import k8s_job_executor
        except ImportError as exc:
            raise ImportError("DANQING_EXECUTOR=k8s needs dagster-k8s (pip install dagster-k8s==0.29.27; "
                              "docker/requirements-deploy.txt installs it in the image)") from exc
        return k8s_job_executor
    raise ValueError(f"unknown executor {kind!r}: expected 'multiprocess' or 'k8s'")
