"""Zero-filling a segment ahead of the writer, from a thread of its own.

A group commit that appends to a file changes its size, so its fdatasync must also commit the
inode through the filesystem's journal. Overwriting blocks that are already allocated and synced
changes no metadata, so the commit's fdatasync is shorter and cheaper in CPU (most of it kernel
time), and the lineage-on gateway, whose event loop waits for each commit, answers more decisions
per second (measured on ext4: docs/performance-log.md). ``posix_fallocate`` does not do it: its
unwritten extents still need a journal commit when first written.

So the current segment is kept written with zeros and synced up to ``allocated``, a chunk (4 MiB)
ahead of the writer. The writer writes below ``allocated`` without a lock; only a write that would
run past it (the filler fell behind) takes ``lock``, so that it never races a fill of the same
bytes. Sealed segments are trimmed back to their last frame; a crash leaves a zero-filled tail,
which recovery trims (``gateway.outbox.segments``).
"""

from __future__ import annotations

import logging
import os
import threading

from gateway.outbox.segments import pwrite_all

log = logging.getLogger(__name__)

CHUNK_BYTES = 4 * 1024 * 1024


class Preallocator:
    """Keeps the file it follows zero-filled and synced up to ``allocated``; see the module
    docstring. A failure to fill (a full disk) only stops the filling: the writer goes on past
    ``allocated`` as it would without it."""

    def __init__(self, chunk_bytes: int = CHUNK_BYTES) -> None:
        """``chunk_bytes`` 0: nothing is filled (every write then takes ``lock``, uncontended)."""
        self.lock = threading.Lock()
        self.allocated = 0
        self._chunk = chunk_bytes
        self._zeros = memoryview(bytes(chunk_bytes))
        self._fd = -1
        self._limit = 0
        self._wake = threading.Event()
        self._closing = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if not self._chunk:
            return
        self._thread = threading.Thread(target=self._run, name="outbox-prealloc", daemon=True)
        self._thread.start()

    def follow(self, fd: int, size: int, limit: int) -> None:
        """Fills ``fd`` from ``size`` up to ``limit`` from now on. Call with ``lock`` held, or
        before ``start``."""
        self._fd, self.allocated, self._limit = fd, size, limit
        self._wake.set()

    def wrote(self, end: int) -> None:
        """Told where the writer's data now ends: wakes the filler when under half a chunk of
        filled space is left ahead of it."""
        if self._chunk and self.allocated - end < self._chunk // 2 and self.allocated < self._limit:
            self._wake.set()

    def close(self) -> None:
        """Stops the filler, waiting for a fill in progress (blocking)."""
        self._closing = True
        self._wake.set()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._closing:
                return
            with self.lock:
                start = self.allocated
                end = min(start + self._chunk, self._limit)
                if self._fd < 0 or end <= start:
                    continue
                try:
                    pwrite_all(self._fd, self._zeros[: end - start], start)
                    os.fdatasync(self._fd)
                except OSError as e:
                    log.warning("outbox: zero-filling ahead stopped (%s); commits go on", e)
                    return
                self.allocated = end
