"""A tiny job with two GPU-tagged steps and one CPU step, run under the code location's executor."""

import os
import time
from pathlib import Path

import dagster as dg

from danqing_assets.gpu import executor, gpu_op_tags


def _record(name: str) -> None:
    log = Path(os.environ["DANQING_TEST_STEP_LOG"])
    start = time.time()
    time.sleep(1.5)
    with log.open("a") as fh:
        fh.write(f"{name} {start} {time.time()}\n")


@dg.op(tags=gpu_op_tags())
def gpu_step_a() -> None:
    _record("gpu_a")


@dg.op(tags=gpu_op_tags())
def gpu_step_b() -> None:
    _record("gpu_b")


@dg.op
def cpu_step() -> None:
    _record("cpu")


@dg.job(executor_def=executor)
def two_gpu_steps():
    gpu_step_a()
    gpu_step_b()
    cpu_step()
