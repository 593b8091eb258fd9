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


# The default executor of the code location: parallel CPU steps, one GPU step at a time.
executor = dg.multiprocess_executor.configured(
    {"tag_concurrency_limits": [{"key": GPU_TAG, "value": "true", "limit": 1}]}, name="danqing_multiprocess"
)
