"""How many requests are on the wire: a few per host (politeness), and a cap over all hosts.

Per-host semaphores are made on first use and dropped once no task holds or
waits for them, so a run over millions of hosts keeps only the busy ones.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class HostSlots:
    """Per-host semaphores (made on first use, dropped when idle) nested in one global semaphore."""

    def __init__(self, per_host: int, total: int) -> None:
        self._per_host = per_host
        self._global = asyncio.Semaphore(total)
        self._hosts: dict[str, tuple[asyncio.Semaphore, list[int]]] = {}

    @asynccontextmanager
    async def hold(self, host: str) -> AsyncIterator[None]:
        if host not in self._hosts:
            self._hosts[host] = (asyncio.Semaphore(self._per_host), [0])
        semaphore, users = self._hosts[host]
        users[0] += 1
        try:
            # Host first, then global: a request waiting for its host holds no global slot.
            async with semaphore, self._global:
                yield
        finally:
            users[0] -= 1
            if users[0] == 0:
                del self._hosts[host]
