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

from governance.errors import LineageError, UnstorableData
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
    refused: int = 0
    """Entries the database refused as data, logged instead (``AccessLog._one_by_one``)."""


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
                    done = len(batch)
                except UnstorableData:
                    done = await self._one_by_one(batch)
                except LineageError as e:
                    done = 0
                    log.error("access log: %d entries not written yet: %s", len(batch), e)
                del self._pending[:done]
                self.stats.entries += done
                self.stats.batches += 1
                self.stats.flush_s += time.perf_counter() - started
                if done < len(batch):
                    self.stats.failures += 1
                    return

    async def _one_by_one(self, batch: list[AccessEntry]) -> int:
        """A value the database refuses would fail its batch at every flush and stop the log
        there: each entry is written alone, and one the database refuses is logged whole (the
        log file keeps what the table cannot) and left out. Returns how many entries are done
        with, stopping at the first that could not be written for another reason."""
        for done, entry in enumerate(batch):
            try:
                await self._store.append_access([entry])
            except UnstorableData as e:
                self.stats.refused += 1
                log.error("access log entry refused by the database (%s): %s", e, entry.body())
            except LineageError as e:
                log.error("access log: %d entries not written yet: %s", len(batch) - done, e)
                return done
        return len(batch)

    async def run(self) -> None:
        """Flushes every ``flush_interval_s`` (sooner when a batch is full) until cancelled,
        then once more."""
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._interval)
                self._wake.clear()
                try:
                    await self.flush()
                except Exception:
                    # The log's writer must outlive any one failure: the entries stay pending.
                    log.exception("access log flush failed; retrying at the next interval")
        finally:
            await self.flush()
