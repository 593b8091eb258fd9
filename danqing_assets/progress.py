"""Progress lines a person can follow: stage, items done, rate.

Steps log them to the run (visible in the UI) and to the Python logger
``danqing_assets.progress``, which the demo prints to the terminal.
"""

from __future__ import annotations

import logging
import time

import dagster as dg

log = logging.getLogger("danqing_assets.progress")


class Progress:
    def __init__(self, context: dg.OpExecutionContext, stage: str, unit: str, total: int | None = None) -> None:
        self.context, self.stage, self.unit, self.total = context, stage, unit, total
        self.started = time.perf_counter()
        self.done = 0

    def advance(self, n: int = 1, note: str = "") -> None:
        self.update(self.done + n, note)

    def update(self, done: int, note: str = "") -> None:
        """Report ``done`` items so far."""
        self.done = done
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        of_total = f"/{self.total}" if self.total is not None else ""
        line = f"[{self.stage}] {self.done}{of_total} {self.unit} · {self.done / elapsed:,.1f} {self.unit}/s"
        if note:
            line += f" · {note}"
        self.context.log.info(line)
        log.info(line)
