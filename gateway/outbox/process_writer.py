"""``ProcessWriter`` (``--outbox-sync process``): the loop writes, a helper process syncs.

Each event-loop pass's appends are written into the open segment on the loop (a ``pwrite`` into
the page cache) and a sync request goes to the helper (``gateway.outbox.syncer``); the
group's waiters are released when its reply arrives, in order. Requests made while a sync runs
are synced together by the next one, so groups grow under load instead of queueing.

While the loop is mostly idle (``gateway.loop_load``, busy share below ``SYNC_HERE_BELOW_BUSY``)
and the helper holds no group, the writer syncs on the loop instead: with one call in flight
nothing else waits for the loop, and the answer skips the wake-up of the helper and its reply
(about 0.1 ms at one call in flight, docs/performance.md).

Why a process: the ``loop`` writer blocks the event loop for every fdatasync, and the ``thread``
writer needs the GIL three times per group, each hand-off waiting for the busy loop to let go.
It pays where the gateway's loop is saturated (ScoreBatch with lineage: more rows/s than ``loop``
and ``thread``); for Score at saturation and one call at a time it measured the same as ``loop``
(docs/performance-log.md).

If the helper dies, the writer syncs what it had asked for on the loop itself, releases those
groups, and goes on as the ``loop`` writer (logged); nothing acknowledged depends on the helper.
A failed sync in the helper breaks the writer like a failed sync on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import subprocess
import sys
from collections import deque

from gateway.outbox import syncer
from gateway.outbox.segments import Position
from gateway.outbox.syncer import CLOSE, OPEN, REPLY, REQUEST, SYNC
from gateway.outbox.writer import LoopWriter, Waiters

log = logging.getLogger(__name__)

# The loop's busy share below which a group is synced on the loop itself (``_sync_here``).
SYNC_HERE_BELOW_BUSY = 0.5

# How long close waits for the helper's last replies before syncing on the loop instead.
CLOSE_WAIT_S = 5.0


class ProcessWriter(LoopWriter):
    """The ``loop`` writer, with its fdatasync done by a helper process; see the module
    docstring."""

    def _setup(self) -> None:
        self._sock: socket.socket | None = None
        self._helper: subprocess.Popen[bytes] | None = None
        self._seq = 0
        # Groups written, waiting for their sync: (seq, position after, waiters, records).
        self._unsynced: deque[tuple[int, Position, Waiters, int]] = deque()
        self._replied = asyncio.Event()

    def start(self) -> None:
        """Starts the helper. Call on the event loop (it watches the helper's socket)."""
        super().start()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._helper = subprocess.Popen(
                # By path, isolated: the helper needs only the standard library, not this
                # package's imports (protobuf, gRPC) before it can serve.
                [sys.executable, "-I", syncer.__file__, str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
            )
        except OSError as e:
            ours.close()
            log.error("outbox sync helper could not start (%s); syncing on the event loop", e)
            return
        finally:
            theirs.close()
        ours.setblocking(False)
        self._sock = ours
        self._loop.add_reader(ours.fileno(), self._on_replies)
        self._send(OPEN, self._index, 0, self._fd)

    @property
    def helper_pid(self) -> int | None:
        """The helper's process id while it serves this writer (None once it is gone, or if it
        never started)."""
        return self._helper.pid if self._helper is not None and self._sock is not None else None

    def _send(self, kind: int, index: int, seq: int, fd: int | None = None) -> None:
        """Sends one request; if the helper is gone, the writer goes on alone."""
        if self._sock is None:
            return
        try:
            if fd is None:
                self._sock.send(REQUEST.pack(kind, index, seq))
            else:
                socket.send_fds(self._sock, [REQUEST.pack(kind, index, seq)], [fd])
        except OSError as e:
            # A full socket buffer would need ~200,000 unanswered requests: treat it as dead too.
            self._helper_gone(f"sending to it failed ({e})")

    def _roll(self) -> None:
        sealed = self._index
        super()._roll()  # seals (and syncs) the old segment on the loop
        self._send(CLOSE, sealed, 0)
        self._send(OPEN, self._index, 0, self._fd)

    def _write_group(self, frames: list[bytes], waiters: Waiters) -> None:
        if self._sock is None or self._sync_here():
            super()._write_group(frames, waiters)
            return
        error = self._commit(frames, sync=False)
        if error is not None:
            self._failed(error, waiters)
            return
        self._seq += 1
        self._unsynced.append((self._seq, self.position, waiters, len(frames)))
        self._send(SYNC, self._index, self._seq)

    def _sync_here(self) -> bool:
        """Whether this group is synced on the loop rather than by the helper: when the loop is
        mostly idle (few calls in flight) and the helper has nothing outstanding, so the groups
        stay in order. Blocking an idle loop for one fdatasync costs no other call anything,
        while waking the helper and waiting for its reply adds two context switches to the
        answer's path."""
        return (
            not self._unsynced
            and self._loop_busy is not None
            and self._loop_busy() < SYNC_HERE_BELOW_BUSY
        )

    def _on_replies(self) -> None:
        while self._sock is not None:
            try:
                data = self._sock.recv(REPLY.size)
            except BlockingIOError:
                return
            except OSError as e:
                self._helper_gone(f"reading from it failed ({e})")
                return
            if not data:
                self._helper_gone("it exited")
                return
            status, seq = REPLY.unpack(data)
            if status:
                self._sync_failed(OSError(status, f"fdatasync: {os.strerror(status)}"))
                return
            self.fsyncs += 1
            while self._unsynced and self._unsynced[0][0] <= seq:
                _, position, waiters, records = self._unsynced.popleft()
                self._published(position, waiters, records)
            self._replied.set()

    def _sync_failed(self, error: OSError) -> None:
        self._stop_helper()
        self._error = error
        waiters = [w for _, _, group, _ in self._unsynced for w in group]
        self._unsynced.clear()
        self._failed(error, waiters)
        self._replied.set()

    def _helper_gone(self, why: str) -> None:
        """Syncs the groups the helper had not confirmed on the loop, then works alone."""
        if self._sock is None:
            return
        log.error("outbox sync helper lost (%s); syncing on the event loop from now on", why)
        self._stop_helper()
        if self._unsynced:
            # Earlier segments were synced when sealed; one fdatasync covers the open one.
            try:
                os.fdatasync(self._fd)
                self.fsyncs += 1
            except OSError as e:
                self._sync_failed(e)
                return
            while self._unsynced:
                _, position, waiters, records = self._unsynced.popleft()
                self._published(position, waiters, records)
        self._replied.set()

    def _stop_helper(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            self._loop.remove_reader(sock.fileno())
            sock.close()  # the helper exits at the end of its stream

    async def aclose(self) -> None:
        self._flush()
        deadline = self._loop.time() + CLOSE_WAIT_S
        while self._unsynced and self._sock is not None:
            self._replied.clear()
            left = deadline - self._loop.time()
            if left <= 0:
                self._helper_gone(f"no reply within {CLOSE_WAIT_S:.0f} s at close")
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._replied.wait(), left)
        self._stop_helper()
        helper, self._helper = self._helper, None
        if helper is not None:
            try:
                await asyncio.to_thread(helper.wait, CLOSE_WAIT_S)
            except subprocess.TimeoutExpired:
                helper.kill()
                await asyncio.to_thread(helper.wait)
        self._close_segment()
