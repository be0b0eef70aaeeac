"""The naive hop: a ``grpc.aio`` proxy passing every unary call's bytes to one upstream.

No parsing, no routing, no records: what one more Python gRPC hop costs, to set the gateway
against.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc

from loadtests.bench.servers import serve, server_parser


async def _run(upstream: str, host: str, port: int, ready_file: Any) -> int:
    channel = grpc.aio.insecure_channel(upstream)
    calls: dict[str, Any] = {}

    async def forward(
        request: bytes, context: grpc.aio.ServicerContext[Any, Any], method: str
    ) -> bytes:
        call = calls.get(method)
        if call is None:
            call = calls[method] = channel.unary_unary(method)
        try:
            response: bytes = await call(request, timeout=context.time_remaining())
        except grpc.aio.AioRpcError as e:
            await context.abort(e.code(), e.details() or "")
        return response

    return await serve(forward, host, port, ready_file, on_stop=channel.close)


def main(argv: list[str] | None = None) -> int:
    parser = server_parser("bench-proxy", __doc__)
    parser.add_argument("--upstream", required=True, help="host:port every call is passed to")
    args = parser.parse_args(argv)
    return asyncio.run(_run(args.upstream, args.host, args.port, args.ready_file))


if __name__ == "__main__":
    raise SystemExit(main())
