"""The access log's writer: entries gathered from calls and appended to the chain in batches.

A call hands its entry over and returns without waiting for the database: the entries of every
call in ``flush_interval_s`` go into one write transaction through the store's writer thread
(one commit, one fsync), so a read costs a list append on the event loop. The price is a window:
entries not yet flushed when the process is killed (-9) are lost; a clean stop flushes them.
Should the backlog pass ``backlog_max`` (the database is down, or a flood of calls), callers wait
for a flush instead of the process growing without bound: the log is never dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from governance.errors import LineageError
from governance.store import LineageStore
from governance.store.entries import AccessEntry

log = logging.getLogger(__name__)


@dataclass(slots=True)
class AuditStats:
    entries: int = 0
    batches: int = 0
    flush_s: float = 0.0
    """Time spent in flushes (on the writer thread, not on the calls' path)."""
    failures: int = 0


class AccessLog:
    def __init__(
        self,
        store: LineageStore,
        *,
        flush_interval_s: float = 0.05,
        batch_max: int = 2000,
        backlog_max: int = 50_000,
    ) -> None:
        self._store = store
        self._interval = flush_interval_s
        self._batch_max = batch_max
        self._backlog_max = backlog_max
        self._pending: list[AccessEntry] = []
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self.stats = AuditStats()

    async def record(self, entry: AccessEntry) -> None:
        self._pending.append(entry)
        if len(self._pending) >= self._batch_max:
            self._wake.set()
        if len(self._pending) >= self._backlog_max:
            await self.flush()

    async def flush(self) -> None:
        """Appends what is pending; on a database error keeps it for the next flush."""
        async with self._lock:
            while self._pending:
                batch = self._pending[: self._batch_max]
                started = time.perf_counter()
                try:
                    await self._store.append_access(batch)
                except LineageError as e:
                    self.stats.failures += 1
                    log.error("access log: %d entries not written yet: %s", len(batch), e)
                    return
                del self._pending[: len(batch)]
                self.stats.entries += len(batch)
                self.stats.batches += 1
                self.stats.flush_s += time.perf_counter() - started

    async def run(self) -> None:
        """Flushes every ``flush_interval_s`` (sooner when a batch is full) until cancelled,
        then once more."""
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._interval)
                self._wake.clear()
                await self.flush()
        finally:
            await self.flush()
