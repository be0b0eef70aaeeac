"""Shadow (mirror) traffic: fire-and-forget tasks with their own bound, never the caller's wait.

A shadow call is started as its own task and the caller's answer never awaits it; its decision
is recorded (arm ``shadow``, linked to the primary decision) by the coroutine the service hands
in. At most ``max_in_flight`` shadow calls run at once per process; beyond that a shadow is
dropped and counted, so a hanging shadow target can cost memory and sockets only up to the bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)


class ShadowRunner:
    def __init__(self, max_in_flight: int) -> None:
        self.max_in_flight = max_in_flight
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def submit(self, work: Coroutine[Any, Any, None]) -> bool:
        """Starts ``work`` unless the bound is reached (then it is closed unstarted: False)."""
        if len(self._tasks) >= self.max_in_flight:
            work.close()
            return False
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return True

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("shadow call failed unexpectedly", exc_info=task.exception())

    async def drain(self, timeout_s: float) -> None:
        """Lets running shadows finish for up to ``timeout_s``, then cancels the rest."""
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=timeout_s)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError):
                await task
