"""What the bench's own tiny servers (echo, pass-through proxy) share: a generic bytes handler
served by ``grpc.aio`` on loopback, the ready file, and a graceful stop on SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc

BytesBehaviour = Callable[[bytes, grpc.aio.ServicerContext[Any, Any], str], Awaitable[bytes]]


def server_parser(prog: str, description: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--ready-file", type=Path, default=None)
    return parser


class BytesHandler(grpc.GenericRpcHandler):  # type: ignore[misc]
    """Every unary method, request and response left as bytes (no protobuf parsing)."""

    def __init__(self, behaviour: BytesBehaviour) -> None:
        self._behaviour = behaviour

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        method: str = handler_call_details.method
        behaviour = self._behaviour

        async def unary(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
            return await behaviour(request, context, method)

        return grpc.unary_unary_rpc_method_handler(unary)


def write_ready_file(path: Path, info: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(info) + "\n")
    os.replace(tmp, path)


async def serve(
    behaviour: BytesBehaviour,
    host: str,
    port: int,
    ready_file: Path | None,
    on_stop: Callable[[], Awaitable[None]] | None = None,
) -> int:
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((BytesHandler(behaviour),))
    bound = server.add_insecure_port(f"{host}:{port}")
    await server.start()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    if ready_file is not None:
        write_ready_file(ready_file, {"grpc": f"{host}:{bound}", "pid": os.getpid()})
    await stopping.wait()
    await server.stop(1.0)
    if on_stop is not None:
        await on_stop()
    return 0
