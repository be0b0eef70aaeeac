"""The outbox's sync helper: a child process that fdatasyncs segments for the gateway.

With ``--outbox-sync process`` the gateway's event loop writes each group of appends into the
page cache and asks this process, over a Unix ``SOCK_SEQPACKET`` socket pair, to make it durable;
the group's decisions are answered when the reply arrives. The loop therefore never blocks in
``fdatasync``, and, unlike a writer thread, the helper needs no share of the gateway's GIL to run
or to report back: its reply wakes the loop like any socket.

Messages (``REQUEST``: kind, segment index, sequence number):

- ``OPEN``: the segment's file descriptor rides along (SCM_RIGHTS); the helper keeps its copy,
- ``SYNC``: fdatasync that segment, then reply ``(0, seq)``; requests waiting in the socket are
  taken together, each segment synced once, and answered with the highest ``seq``,
- ``CLOSE``: drop the segment's descriptor (the gateway sealed and synced it, so a ``SYNC`` for
  it still waiting in the same round needs nothing more).

A failed sync is answered ``(errno, seq)`` and the helper exits: what reached the disk is unknown
after a failed fdatasync, so the gateway stops taking decisions (as with its own syncs). The
helper also exits when the gateway's end closes, so it never outlives the gateway.

Run as ``python -I .../gateway/outbox/syncer.py <socket fd>`` (standard library only, so that it
starts in milliseconds); only ``gateway.outbox.process_writer`` starts it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import struct
import sys

REQUEST = struct.Struct("<Bqq")
REPLY = struct.Struct("<iq")
OPEN, SYNC, CLOSE = 1, 2, 3


def _serve(sock: socket.socket) -> None:
    segments: dict[int, int] = {}
    while True:
        sock.setblocking(True)
        batch = [socket.recv_fds(sock, REQUEST.size, 1)]
        sock.setblocking(False)
        while batch[-1][0]:  # everything already waiting joins this round, up to the end
            try:
                batch.append(socket.recv_fds(sock, REQUEST.size, 1))
            except BlockingIOError:
                break
        to_sync: list[int] = []
        last = -1
        for data, fds, _, _ in batch:
            if not data:
                return  # the gateway closed its end
            kind, index, seq = REQUEST.unpack(data)
            if kind == OPEN and fds:
                segments[index] = fds[0]
            elif kind == CLOSE and index in segments:
                os.close(segments.pop(index))
                # The gateway synced the segment when it sealed it: a SYNC for it that arrived
                # in this round, before the CLOSE, is done.
                if index in to_sync:
                    to_sync.remove(index)
            elif kind == SYNC:
                if index not in to_sync:
                    to_sync.append(index)
                last = max(last, seq)
        for index in to_sync:
            try:
                os.fdatasync(segments[index])
            except KeyError:
                sock.sendall(REPLY.pack(errno.EBADF, last))
                return
            except OSError as e:
                sock.sendall(REPLY.pack(e.errno or errno.EIO, last))
                return
        if last >= 0:
            sock.sendall(REPLY.pack(0, last))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    # Ctrl-C in a terminal reaches the whole process group: the helper stays until the gateway
    # has closed its end, so that the gateway's last groups are still synced on the way out.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sock = socket.socket(fileno=int(args[0]))
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the gateway went away
        _serve(sock)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
