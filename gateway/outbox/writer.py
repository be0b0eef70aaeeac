"""Group commit: whatever the event loop appended meanwhile is written and fdatasync'd at once.

Three writers, the same files and guarantees (``OutboxConfig.sync``); the default, ``process``
(``gateway.outbox.process_writer``), is the ``LoopWriter`` with its fdatasync done by a helper
process, so that the loop neither blocks for the sync nor hands over the GIL. The two here:

- ``LoopWriter`` (``loop``): the appends of one event-loop pass are written and
  synced by a callback at the end of that pass, on the loop itself, and their waiters released
  there. No thread, so no hand-offs of the GIL: under load an append waits far less for
  durability than with the thread (docs/performance-log.md). The loop is blocked for the
  fdatasync.
- ``GroupWriter`` (``thread``): one thread takes everything pending, writes it, calls fdatasync
  once and releases the group with a single call into the loop. While a sync runs the next group
  builds up and the loop keeps working, which wins on disks whose fdatasync takes milliseconds;
  but the thread needs the GIL three times per group, and under CPU load each time can wait for
  the interpreter's switch interval (5 ms).

Both write into space a ``Preallocator`` has zero-filled and synced ahead of them, so that a
group's fdatasync commits data only (``gateway.outbox.prealloc``); a segment is trimmed to its last
frame when it is sealed or closed.

After an I/O error a writer refuses everything (what reached the disk is unknown once a sync has
failed), and the gateway sheds until it is restarted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable
from pathlib import Path

from gateway.outbox.framing import SEGMENT_MAGIC
from gateway.outbox.prealloc import CHUNK_BYTES, Preallocator
from gateway.outbox.segments import Position, fsync_directory, pwrite_all, segment_path

Waiters = list["asyncio.Future[None]"]
Published = Callable[[Position, Waiters, int], None]
Failed = Callable[[BaseException, Waiters], None]


class SegmentWriter:
    """Appends to ``<segment>.seg`` files from ``first_segment`` on, rolling at ``segment_bytes``,
    in groups: what ``submit`` collected is written and synced at once, then ``published``
    (position, waiters, records) or ``failed`` (error, waiters) is called on ``loop``. The
    subclasses decide where and when a group is written."""

    def __init__(
        self,
        directory: Path,
        first_segment: int,
        segment_bytes: int,
        loop: asyncio.AbstractEventLoop,
        published: Published,
        failed: Failed,
        preallocate: bool = True,
        loop_busy: Callable[[], float] | None = None,
    ) -> None:
        self._directory = directory
        self._segment_bytes = segment_bytes
        self._loop = loop
        self._published = published
        self._failed = failed
        # The event loop's busy share (``gateway.loop_load``), for a writer that syncs where it
        # is cheapest at the moment; None when the loop is not measured.
        self._loop_busy = loop_busy
        self._frames: list[bytes] = []
        self._waiters: Waiters = []
        self._error: BaseException | None = None
        self.fsyncs = 0
        self._prealloc = Preallocator(min(CHUNK_BYTES, segment_bytes) if preallocate else 0)
        self._index = first_segment
        self._fd = self._create(first_segment)
        self._size = len(SEGMENT_MAGIC)
        self._prealloc.follow(self._fd, self._size, segment_bytes)
        self._setup()

    def _setup(self) -> None:
        """A subclass's own state, made at the end of ``__init__``."""

    @property
    def helper_pid(self) -> int | None:
        """The process doing this writer's fdatasyncs, if not this one (``ProcessWriter``)."""
        return None

    @property
    def position(self) -> Position:
        return Position(self._index, self._size)

    def start(self) -> None:
        """Called once the owner can take callbacks."""
        self._prealloc.start()

    def submit(self, data: bytes, waiter: asyncio.Future[None]) -> None:
        raise NotImplementedError

    def submit_many(self, frames: list[bytes], waiter: asyncio.Future[None]) -> None:
        """Several records, one waiter: released when the group holding the last is durable."""
        raise NotImplementedError

    async def aclose(self) -> None:
        """Writes what is pending, releases its waiters, then closes the segment."""
        raise NotImplementedError

    def _create(self, index: int) -> int:
        fd = os.open(
            segment_path(self._directory, index), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600
        )
        pwrite_all(fd, SEGMENT_MAGIC, 0)
        os.fdatasync(fd)
        fsync_directory(self._directory)
        self.fsyncs += 2
        return fd

    def _seal(self) -> None:
        """Trims the segment's zero-filled tail, syncs and closes it. Call with the
        preallocator's lock held or stopped."""
        os.ftruncate(self._fd, self._size)
        os.fdatasync(self._fd)
        self.fsyncs += 1
        os.close(self._fd)

    def _roll(self) -> None:
        with self._prealloc.lock:  # waits for a fill of the sealed segment in progress
            self._seal()
            self._index += 1
            self._fd = self._create(self._index)
            self._size = len(SEGMENT_MAGIC)
            self._prealloc.follow(self._fd, self._size, self._segment_bytes)

    def _put(self, data: bytes) -> None:
        end = self._size + len(data)
        if end <= self._prealloc.allocated:
            pwrite_all(self._fd, data, self._size)
        else:
            # Past the filled space: never at the same time as a fill of those bytes.
            with self._prealloc.lock:
                pwrite_all(self._fd, data, self._size)
                self._prealloc.allocated = max(self._prealloc.allocated, end)
        self._size = end
        self._prealloc.wrote(end)

    def _write(self, frames: list[bytes], sync: bool = True) -> None:
        """Writes ``frames`` at the end of the log (rolling segments as needed) and, unless
        ``sync`` is false, fdatasyncs the open segment."""
        chunk: list[bytes] = []
        chunk_size = 0
        for data in frames:
            if self._size + chunk_size + len(data) > self._segment_bytes and (
                chunk or self._size > len(SEGMENT_MAGIC)
            ):
                self._put(b"".join(chunk))
                chunk, chunk_size = [], 0
                self._roll()
            chunk.append(data)
            chunk_size += len(data)
        self._put(b"".join(chunk))
        if sync:
            os.fdatasync(self._fd)
            self.fsyncs += 1

    def _close_segment(self) -> None:
        """Stops the filling and seals the open segment; after a write error, as far as it can
        (recovery trims a zero-filled tail)."""
        self._prealloc.close()
        try:
            self._seal()
        except OSError:
            with contextlib.suppress(OSError):
                os.close(self._fd)

    def _commit(self, frames: list[bytes], sync: bool = True) -> BaseException | None:
        """Writes and syncs one group; the error that broke the writer, now or before."""
        if self._error is None:
            try:
                self._write(frames, sync)
            except OSError as e:
                self._error = e
        return self._error


class LoopWriter(SegmentWriter):
    """Writes and syncs on the event loop, once per loop pass; see the module docstring."""

    _scheduled = False

    def submit(self, data: bytes, waiter: asyncio.Future[None]) -> None:
        self._frames.append(data)
        self._waiters.append(waiter)
        self._schedule()

    def submit_many(self, frames: list[bytes], waiter: asyncio.Future[None]) -> None:
        self._frames.extend(frames)
        self._waiters.append(waiter)
        self._schedule()

    def _schedule(self) -> None:
        # One callback per pass: appends made while earlier callbacks of this pass run join it.
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        frames, waiters = self._frames, self._waiters
        if not frames:
            return
        self._frames, self._waiters = [], []
        self._write_group(frames, waiters)

    def _write_group(self, frames: list[bytes], waiters: Waiters) -> None:
        """Writes and syncs one pass's appends, then releases (or fails) their waiters."""
        error = self._commit(frames)
        if error is not None:
            self._failed(error, waiters)
        else:
            self._published(self.position, waiters, len(frames))

    async def aclose(self) -> None:
        self._flush()
        self._close_segment()


class GroupWriter(SegmentWriter):
    """Writes and syncs on a thread of its own; see the module docstring."""

    def _setup(self) -> None:
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        super().start()
        self._thread = threading.Thread(target=self._run, name="outbox-writer", daemon=True)
        self._thread.start()

    def submit(self, data: bytes, waiter: asyncio.Future[None]) -> None:
        with self._cond:
            self._frames.append(data)
            self._waiters.append(waiter)
            self._cond.notify()

    def submit_many(self, frames: list[bytes], waiter: asyncio.Future[None]) -> None:
        with self._cond:
            self._frames.extend(frames)
            self._waiters.append(waiter)
            self._cond.notify()

    def close(self) -> None:
        """Writes what is pending, then stops the thread (blocking: call it off the loop)."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join()
        self._close_segment()

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)
        await asyncio.sleep(0)  # runs the last group's callback

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._frames and not self._stopping:
                    self._cond.wait()
                if not self._frames:
                    return
                frames, waiters = self._frames, self._waiters
                self._frames, self._waiters = [], []
            error = self._commit(frames)
            if error is not None:
                self._loop.call_soon_threadsafe(self._failed, error, waiters)
            else:
                self._loop.call_soon_threadsafe(
                    self._published, self.position, waiters, len(frames)
                )
