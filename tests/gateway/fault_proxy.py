"""A fault-injecting TCP proxy: the test double for a network or runtime fault.

It stands in front of a real runtime process and, on command, forwards faithfully, delays every
request byte by a fixed time (a slow runtime), holds them (a hanging runtime: connections accepted,
nothing answered), or goes down (listener closed, connections reset: a killed runtime) and comes
back on the same port. It runs its own event loop in a thread, so tests can command it from sync
or async code.

It also reads the HTTP/2 frames it carries, so that it can refuse one request as a runtime would:
``refuse(marker)`` answers every request whose message bytes contain ``marker`` with a gRPC status
of its own (INVALID_ARGUMENT by default) and passes every other request through. A refused
request's headers reach the runtime, then a RST_STREAM instead of its message, so the runtime
never scores it and both ends' HPACK tables stay in step (the proxy's answer is encoded with
literals that are never indexed); the caller's connection window gets back the bytes the proxy
kept. While a rule is set, every request's message is kept in ``seen``.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import threading
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

Mode = Literal["pass", "hang", "down"]

_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_DATA, _HEADERS, _RST_STREAM, _WINDOW_UPDATE, _CONTINUATION = 0x0, 0x1, 0x3, 0x8, 0x9
_END_STREAM, _END_HEADERS, _PADDED = 0x1, 0x4, 0x8
_CANCEL = 0x8
_FRAME_HEADER = struct.Struct(">I B I")  # 24-bit length in the top of the first word


def _frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))[1:]
        + bytes((kind, flags))
        + struct.pack(">I", stream)
        + payload
    )


def _hpack_integer(value: int, prefix_bits: int, first: int) -> bytes:
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out = bytearray((first | limit,))
    value -= limit
    while value >= 128:
        out.append(value % 128 + 128)
        value //= 128
    out.append(value)
    return bytes(out)


def _never_indexed(name: str, value: str) -> bytes:
    """A header as an HPACK literal that is never indexed: no table of either end changes."""
    encoded = [name.encode(), value.encode()]
    return b"\x10" + b"".join(_hpack_integer(len(e), 7, 0) + e for e in encoded)


def grpc_status_frames(stream: int, code: int, message: str) -> bytes:
    """A trailers-only gRPC response: one HEADERS frame that ends ``stream`` with ``code``."""
    block = b"\x88" + b"".join(  # 0x88: ":status: 200", static table entry 8
        _never_indexed(n, v)
        for n, v in (
            ("content-type", "application/grpc"),
            ("grpc-status", str(code)),
            ("grpc-message", quote(message, safe=" !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~")),
        )
    )
    return _frame(_HEADERS, _END_STREAM | _END_HEADERS, stream, block)


class _Frames:
    """Cuts one direction of an HTTP/2 connection into whole frames (the client's preface first)."""

    def __init__(self, preface: bool) -> None:
        self._buffer = bytearray()
        self._preface = len(_PREFACE) if preface else 0

    def feed(self, data: bytes) -> Iterator[tuple[int, int, int, bytes]]:
        """(type, flags, stream id, the frame's bytes) of every frame completed by ``data``;
        the preface comes as type -1."""
        buffer = self._buffer
        buffer += data
        if self._preface:
            if len(buffer) < self._preface:
                return
            yield -1, 0, 0, bytes(buffer[: self._preface])
            del buffer[: self._preface]
            self._preface = 0
        while len(buffer) >= 9:
            word, flags, stream = _FRAME_HEADER.unpack_from(buffer)
            size = 9 + (word >> 8)
            if len(buffer) < size:
                return
            frame = bytes(buffer[:size])
            del buffer[:size]
            yield word & 0xFF, flags, stream & 0x7FFFFFFF, frame


def _data_payload(flags: int, frame: bytes) -> bytes:
    payload = frame[9:]
    if flags & _PADDED:
        payload = payload[1 : len(payload) - payload[0]]
    return payload


@dataclass(frozen=True, slots=True)
class Refusal:
    """Requests whose message contains ``marker`` are answered with ``code`` and ``message``."""

    marker: bytes
    code: int = 3  # INVALID_ARGUMENT
    message: str = "refused by the fault proxy"


@dataclass(frozen=True, slots=True)
class SeenRequest:
    """A request's gRPC message as the caller sent it (5-byte prefix included), and whether the
    proxy refused it."""

    message: bytes
    refused: bool


class _Link:
    """One client connection and its upstream, pumping frames both ways."""

    def __init__(
        self, proxy: FaultProxy, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ):
        self.proxy = proxy
        self.client_reader, self.client_writer = reader, writer
        self.tasks: list[asyncio.Task[None]] = []
        self.upstream_writer: asyncio.StreamWriter | None = None
        # DATA frames held until their request is whole, while a refusal rule is set.
        self.held: dict[int, list[bytes]] = {}
        self.refused_streams: set[int] = set()
        # Frames to the client wait while the runtime is midway through a header block.
        self.in_header_block = False
        self.pending: list[bytes] = []

    async def run(self) -> None:
        host, port = self.proxy.upstream.rsplit(":", 1)
        try:
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
        except OSError:
            self.client_writer.close()
            return
        self.upstream_writer = up_writer
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        self.tasks = [
            asyncio.create_task(self._read_requests(queue)),
            asyncio.create_task(self._send_requests(queue, up_writer)),
            asyncio.create_task(self._pump(up_reader)),
        ]
        await asyncio.wait(self.tasks, return_when=asyncio.FIRST_COMPLETED)
        self.close()

    async def _read_requests(self, queue: asyncio.Queue[tuple[float, bytes]]) -> None:
        frames = _Frames(preface=True)
        while data := await self.client_reader.read(65536):
            now = time.monotonic()
            for kind, flags, stream, frame in frames.feed(data):
                for out in self._from_client(kind, flags, stream, frame):
                    queue.put_nowait((now, out))

    def _from_client(self, kind: int, flags: int, stream: int, frame: bytes) -> Iterator[bytes]:
        """What goes upstream for one of the client's frames."""
        rule = self.proxy.refusal
        held = self.held.get(stream)
        if kind != _DATA or (held is None and rule is None):
            yield frame
            return
        if held is None:
            held = self.held[stream] = []
        held.append(frame)
        if not flags & _END_STREAM:
            return
        del self.held[stream]
        message = b"".join(_data_payload(f[4], f) for f in held)
        refused = rule is not None and rule.marker in message
        if rule is not None:
            self.proxy.seen.append(SeenRequest(message, refused))
        if not refused:
            yield b"".join(held)
            return
        assert rule is not None
        self.refused_streams.add(stream)
        yield _frame(_RST_STREAM, 0, stream, struct.pack(">I", _CANCEL))
        kept = sum(len(f) - 9 for f in held)
        if kept:
            self._to_client(_frame(_WINDOW_UPDATE, 0, 0, struct.pack(">I", kept)), inject=True)
        self._to_client(grpc_status_frames(stream, rule.code, rule.message), inject=True)

    def _to_client(self, frame: bytes, inject: bool = False) -> None:
        if inject and self.in_header_block:
            self.pending.append(frame)
            return
        self.client_writer.write(frame)
        if not inject:
            kind, flags = frame[3], frame[4]
            if kind in (_HEADERS, _CONTINUATION):
                self.in_header_block = not flags & _END_HEADERS
            if not self.in_header_block and self.pending:
                self.client_writer.write(b"".join(self.pending))
                self.pending.clear()

    async def _send_requests(
        self, queue: asyncio.Queue[tuple[float, bytes]], writer: asyncio.StreamWriter
    ) -> None:
        # Each chunk leaves `delay_s` after it arrived: a constant added latency, not a queue.
        while True:
            arrived, data = await queue.get()
            while True:
                await self.proxy.flowing.wait()
                wait = arrived + self.proxy.delay_s - time.monotonic()
                if wait <= 0:
                    break
                await asyncio.sleep(wait)
            writer.write(data)
            await writer.drain()

    async def _pump(self, reader: asyncio.StreamReader) -> None:
        frames = _Frames(preface=False)
        while data := await reader.read(65536):
            for kind, _flags, stream, frame in frames.feed(data):
                # The runtime's last words on a stream the proxy answered go nowhere; header
                # blocks still go, as the caller's HPACK table must see them.
                if stream in self.refused_streams and kind not in (_HEADERS, _CONTINUATION):
                    continue
                self._to_client(frame)
            await self.client_writer.drain()

    def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for writer in (self.client_writer, self.upstream_writer):
            if writer is not None:
                writer.close()


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.port = 0
        self.delay_s = 0.0
        self.mode: Mode = "pass"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self.flowing = asyncio.Event()
        self.refusal: Refusal | None = None
        self.seen: list[SeenRequest] = []

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _do(self, work: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(work, self._loop).result(timeout=10)

    def start(self) -> FaultProxy:
        self._thread.start()
        self._do(self._set("pass", 0.0))
        return self

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        link = _Link(self, reader, writer)
        self._links.add(link)
        try:
            with contextlib.suppress(asyncio.CancelledError):
                await link.run()
        finally:
            self._links.discard(link)

    def refuse(self, refusal: Refusal | None) -> None:
        """From now on, answer requests as ``refusal`` says (None: pass them all again);
        ``seen`` starts empty."""
        self._do(self._refuse(refusal))

    async def _refuse(self, refusal: Refusal | None) -> None:
        self.refusal = refusal
        self.seen = []

    def requests_seen(self) -> list[SeenRequest]:
        """The requests that ended since ``refuse``, in order."""
        return list(self.seen)

    def set(self, mode: Mode, delay_s: float = 0.0) -> None:
        """pass (optionally delayed), hang (hold every request byte), down (refuse and reset)."""
        self._do(self._set(mode, delay_s))

    async def _set(self, mode: Mode, delay_s: float) -> None:
        self.delay_s = delay_s
        if mode == "hang":
            self.flowing.clear()
        if mode == "down" and self._server is not None:
            self._server.close()
            self._server = None
            for link in list(self._links):
                link.close()
        if mode != "down" and self._server is None:
            await self._listen()
        if mode == "pass":
            self.flowing.set()
        self.mode = mode

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._do(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    async def _shutdown(self) -> None:
        await self._set("down", 0.0)
        me = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not me]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for link in list(self._links):
            for writer in (link.client_writer, link.upstream_writer):
                if writer is not None:
                    with contextlib.suppress(Exception):
                        await writer.wait_closed()
