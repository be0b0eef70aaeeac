"""The floor of any Python gRPC hop: a ``grpc.aio`` server answering every call with its request."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc

from loadtests.bench.servers import serve, server_parser

ECHO_METHOD = "/bench.Echo/Echo"


async def _echo(request: bytes, _: grpc.aio.ServicerContext[Any, Any], __: str) -> bytes:
    return request


def main(argv: list[str] | None = None) -> int:
    args = server_parser("bench-echo", __doc__).parse_args(argv)
    return asyncio.run(serve(_echo, args.host, args.port, args.ready_file))


if __name__ == "__main__":
    raise SystemExit(main())
