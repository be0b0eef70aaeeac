"""The durable outbox: a record is on disk before the decision is answered, and stays there
until the lineage store has acknowledged it.

``Outbox.append`` frames the record's canonical JSON, counts it against the bound and hands it to
the group-commit writer; it returns once the record's group is fdatasync'd. The sender
(``gateway.outbox.sender``) reads durable records in log order with ``next_batch`` and reports
the store's answers with ``acknowledge``, which persists the cursor and deletes the segments it
has passed. Opening the directory recovers what a crash left: see ``gateway.outbox.segments``.
One process owns a directory at a time (an exclusive lock, released by the kernel at exit).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

from gateway.outbox.config import OutboxConfig
from gateway.outbox.durable_log import Delivery
from gateway.outbox.errors import OutboxClosed, OutboxFull
from gateway.outbox.framing import frame
from gateway.outbox.metrics import OutboxMetrics
from gateway.outbox.otlp import record_span
from gateway.outbox.process_writer import ProcessWriter
from gateway.outbox.segments import (
    Cursor,
    Entry,
    Position,
    Recovery,
    SegmentReader,
    fsync_directory,
    list_segments,
    recover,
    segment_path,
)
from gateway.outbox.writer import GroupWriter, LoopWriter, SegmentWriter, Waiters
from lineage.v1.record import DecisionRecord, canonical_json

log = logging.getLogger(__name__)

LOCK_FILE = "lock"
DEAD_LETTER_FILE = "dead-letter.jsonl"
# OutboxConfig.sync -> the writer that implements it.
WRITERS: dict[str, type[SegmentWriter]] = {
    "process": ProcessWriter,
    "loop": LoopWriter,
    "thread": GroupWriter,
}


class Outbox:
    """Use ``await Outbox.open(config)``; ``close`` flushes and lets the sender drain a while."""

    def __init__(
        self,
        config: OutboxConfig,
        metrics: OutboxMetrics | None = None,
        loop_busy: Callable[[], float] | None = None,
    ) -> None:
        self.config = config
        self._loop_busy = loop_busy
        self.metrics = metrics or OutboxMetrics()
        self.directory = Path(config.directory)
        self.recovery: Recovery | None = None
        self._loop = asyncio.get_running_loop()
        self._records = 0
        self._bytes = 0
        self._durable_total = 0
        self._acked_total = 0
        # (durable_total after the group, wall time it became durable), oldest first.
        self._groups: deque[tuple[int, float]] = deque()
        self._durable_changed = asyncio.Event()
        self._acked_changed = asyncio.Event()
        self._closed = False
        self._broken: BaseException | None = None
        self._broke = asyncio.Event()
        self._fsyncs_seen = 0
        self._sender: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls,
        config: OutboxConfig,
        metrics: OutboxMetrics | None = None,
        loop_busy: Callable[[], float] | None = None,
    ) -> Outbox:
        """Recovers the directory and starts the writer; records are kept, not yet sent.
        ``loop_busy`` is the event loop's busy share, where the writer may use it."""
        outbox = cls(config, metrics, loop_busy)
        await asyncio.to_thread(outbox._open_files)
        outbox._writer.start()  # on the loop: a writer may watch a socket
        return outbox

    def start_delivery(self, delivery: Delivery) -> None:
        """Runs ``delivery`` (the sender) until ``close``, which lets it drain a while first."""
        assert self._sender is None, "one delivery per outbox"
        self._sender = asyncio.create_task(delivery.run(), name="outbox-sender")

    def _open_files(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self.directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise OutboxClosed(f"outbox {self.directory} is in use by another process") from None
        self._cursor = Cursor(self.directory)
        rec = recover(self.directory, self._cursor.load())
        self.recovery = rec
        for path in rec.quarantined:
            self.metrics.quarantined_bytes.inc(path.stat().st_size)
        self._acked = rec.start
        self._records, self._bytes = rec.records, rec.bytes
        self._durable_total = rec.records
        if rec.records:
            oldest = segment_path(self.directory, rec.start.segment).stat().st_mtime
            self._groups.append((rec.records, oldest))
            log.info(
                "outbox %s: %d records (%d bytes) not yet acknowledged, resending from %s",
                self.directory,
                rec.records,
                rec.bytes,
                rec.start,
            )
        self._reader = SegmentReader(self.directory)
        writer: type[SegmentWriter] = WRITERS[self.config.sync]
        self._writer = writer(
            self.directory,
            rec.next_segment,
            self.config.segment_bytes,
            self._loop,
            self._published,
            self._failed,
            self.config.preallocate,
            self._loop_busy,
        )
        self._durable = self._writer.position
        self._fsyncs_seen = self._writer.fsyncs
        self.metrics.observe(lambda: self._records, lambda: self._bytes, self.oldest_unacked_age)

    # ---- appending (event loop) ----

    @property
    def unacked_records(self) -> int:
        return self._records

    @property
    def unacked_bytes(self) -> int:
        return self._bytes

    @property
    def fsyncs(self) -> int:
        return self._writer.fsyncs

    @property
    def sync_helper_pid(self) -> int | None:
        """The process doing this outbox's fdatasyncs (``sync="process"``), while it serves."""
        return self._writer.helper_pid

    @property
    def failure(self) -> BaseException | None:
        """The write error that broke the outbox (every later append is refused), if any."""
        return self._broken

    async def wait_for_failure(self) -> BaseException:
        """Returns the write error once the outbox has broken; waits for ever if it never does."""
        await self._broke.wait()
        assert self._broken is not None
        return self._broken

    def oldest_unacked_age(self) -> float:
        if not self._records or not self._groups:
            return 0.0
        return max(0.0, time.time() - self._groups[0][1])

    def check_capacity(self, size: int = 0, records: int = 1) -> None:
        """Raises OutboxFull (or OutboxClosed) if ``records`` records of ``size`` bytes in all
        would be refused; an admission check can call it before any work is done for a request."""
        if self._closed or self._broken is not None:
            raise OutboxClosed(
                "decision records cannot be made durable: the outbox is "
                + (f"failed ({self._broken})" if self._broken else "closed")
            )
        if (
            self._records + records > self.config.max_unacked_records
            or self._bytes + size > self.config.max_unacked_bytes
        ):
            self.metrics.shed.inc()
            raise OutboxFull(
                f"outbox full: {self._records} records ({self._bytes} bytes) not yet acknowledged "
                f"by the lineage store, oldest {self.oldest_unacked_age():.0f} s; retry later"
            )

    async def append(self, record: DecisionRecord) -> None:
        """Returns once ``record`` is durable; raises OutboxFull when the bound is reached. The
        frame holds the record's decision span (``otlp.record_span``), ready to send."""
        await self.append_payload(record_span(record, canonical_json(record)))

    async def append_payload(self, payload: bytes) -> None:
        """Appends one frame: a decision span, or a record's bare JSON (sent as a span)."""
        data = frame(payload)
        self.check_capacity(len(data))
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._records += 1
        self._bytes += len(data)
        started = time.perf_counter()
        self._writer.submit(data, waiter)
        await waiter
        self.metrics.append_latency.observe(time.perf_counter() - started)

    async def append_many(self, records: Sequence[DecisionRecord]) -> None:
        """Returns once every record is durable (one group commit for all of them); raises
        OutboxFull, before any is queued, when they would not all fit under the bound."""
        if not records:
            return
        frames = [frame(record_span(r, canonical_json(r))) for r in records]
        size = sum(len(f) for f in frames)
        self.check_capacity(size, len(frames))
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._records += len(frames)
        self._bytes += size
        started = time.perf_counter()
        self._writer.submit_many(frames, waiter)
        await waiter
        self.metrics.append_latency.observe(time.perf_counter() - started)

    def _published(self, position: Position, waiters: Waiters, records: int) -> None:
        self._durable = position
        self._durable_total += records
        self._groups.append((self._durable_total, time.time()))
        self.metrics.appends.inc(records)
        fsyncs = self._writer.fsyncs
        self.metrics.fsyncs.inc(fsyncs - self._fsyncs_seen)
        self._fsyncs_seen = fsyncs
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._durable_changed.set()

    def _failed(self, error: BaseException, waiters: Waiters) -> None:
        if self._broken is None:
            log.critical("outbox write failed, refusing all further decisions: %s", error)
        self._broken = error
        self._broke.set()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(OutboxClosed(f"decision record not made durable: {error}"))

    # ---- sending (the sender task) ----

    @property
    def acknowledged(self) -> Position:
        return self._acked

    @property
    def durable(self) -> Position:
        return self._durable

    async def next_batch(self, max_records: int, max_bytes: int, wait: bool = True) -> list[Entry]:
        """The durable records after the cursor, waiting for some if there are none (or
        returning none at once if ``wait`` is false)."""
        while True:
            if self._acked < self._durable:
                entries, after = await asyncio.to_thread(
                    self._reader.read, self._acked, self._durable, max_records, max_bytes
                )
                if entries:
                    return entries
                if after != self._acked:
                    await self.acknowledge(after, 0, 0)  # the next segment starts
                    continue
            if not wait:
                return []
            self._durable_changed.clear()
            if self._acked >= self._durable:
                await self._durable_changed.wait()

    async def acknowledge(self, end: Position, records: int, size: int) -> None:
        """The store has answered for everything before ``end``: persist, release, clean up."""
        previous = self._acked
        await asyncio.to_thread(self._persist_cursor, previous, end)
        self._acked = end
        self._records -= records
        self._bytes -= size
        self._acked_total += records
        while self._groups and self._groups[0][0] <= self._acked_total:
            self._groups.popleft()
        self.metrics.acks.inc(records)
        self._acked_changed.set()

    def _persist_cursor(self, previous: Position, end: Position) -> None:
        self._cursor.store(end)
        if end.segment != previous.segment:
            done = [i for i in list_segments(self.directory) if i < end.segment]
            for index in done:
                segment_path(self.directory, index).unlink(missing_ok=True)
            if done:
                fsync_directory(self.directory)

    async def dead_letter(self, lines: list[bytes]) -> None:
        """Appends JSON lines to the dead-letter file, durably, before they are acknowledged."""
        await asyncio.to_thread(self._write_dead_letters, lines)
        self.metrics.dead_lettered.inc(len(lines))

    def _write_dead_letters(self, lines: list[bytes]) -> None:
        path = self.directory / DEAD_LETTER_FILE
        created = not path.exists()
        with path.open("ab") as f:
            f.write(b"".join(line + b"\n" for line in lines))
            f.flush()
            os.fsync(f.fileno())
        if created:
            fsync_directory(self.directory)

    # ---- closing ----

    async def drained(self, within_s: float) -> bool:
        """Waits until the store has acknowledged everything durable, for up to ``within_s``."""
        deadline = time.monotonic() + within_s
        while self._acked < self._durable:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._acked_changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._acked_changed.wait(), left)
        return True

    async def close(self, grace_s: float = 5.0) -> None:
        """Refuses new appends, makes pending ones durable, gives the sender ``grace_s`` to
        deliver the backlog (what is left is resent by the next start), then stops."""
        if self._closed:
            return
        self._closed = True
        await self._writer.aclose()
        if self._sender is not None:
            if not self._sender.done() and not await self.drained(grace_s):
                log.warning(
                    "outbox closing with %d records not yet acknowledged; they are resent at "
                    "the next start",
                    self._records,
                )
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender
        self._reader.close()
        self._cursor.close()
        os.close(self._lock_fd)
