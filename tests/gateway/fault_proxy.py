"""A fault-injecting TCP proxy: the test double for a network or runtime fault.

It stands in front of a real runtime process and, on command, forwards faithfully, delays every
request byte by a fixed time (a slow runtime), holds them (a hanging runtime: connections accepted,
nothing answered), or goes down (listener closed, connections reset: a killed runtime) and comes
back on the same port. It runs its own event loop in a thread, so tests can command it from sync
or async code, and it knows nothing about gRPC.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Coroutine
from typing import Any, Literal

Mode = Literal["pass", "hang", "down"]


class _Link:
    """One client connection and its upstream, pumping bytes both ways."""

    def __init__(
        self, proxy: FaultProxy, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ):
        self.proxy = proxy
        self.client_reader, self.client_writer = reader, writer
        self.tasks: list[asyncio.Task[None]] = []
        self.upstream_writer: asyncio.StreamWriter | None = None

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
            asyncio.create_task(self._pump(up_reader, self.client_writer)),
        ]
        await asyncio.wait(self.tasks, return_when=asyncio.FIRST_COMPLETED)
        self.close()

    async def _read_requests(self, queue: asyncio.Queue[tuple[float, bytes]]) -> None:
        while data := await self.client_reader.read(65536):
            queue.put_nowait((time.monotonic(), data))

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

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()

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
