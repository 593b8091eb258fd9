"""The one step-level retry policy of every asset and op that does I/O.

Transient HTTP and object-store errors are already retried inside a step
(bounded, with backoff). A step that still fails — a worker lost, a store down
for longer than those retries wait — is retried as a whole by Dagster, after
``DANQING_STEP_RETRY_DELAY_S`` seconds, doubling each time (±jitter so that many
failed shard steps do not come back at the same instant), at most
``DANQING_STEP_MAX_RETRIES`` times. A step that has used its retries fails the
run; "re-execute from failure" then re-runs only the failed steps.
"""

from __future__ import annotations

import dagster as dg

from .settings import Settings, get_settings


def io_retry_policy(settings: Settings | None = None) -> dg.RetryPolicy:
    """The retry policy of every step that reads or writes the network or the object store."""
    settings = settings or get_settings()
    return dg.RetryPolicy(
        max_retries=settings.step_max_retries,
        delay=settings.step_retry_delay_s,
        backoff=dg.Backoff.EXPONENTIAL,
        jitter=dg.Jitter.PLUS_MINUS,
    )
