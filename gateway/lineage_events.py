"""Sends route-change events to the lineage store's ``RecordRouteChange`` RPC.

Sending happens in the background (the reloader never waits on the network), with a few
back-off retries: the store records a change idempotently, so a retry is safe. A change that
cannot be delivered is logged (the log sink has it too) and dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import grpc
import orjson
from google.protobuf.timestamp_pb2 import Timestamp

from gateway.route_events import RouteChange, RouteChangeSink
from lineage.v1 import lineage_pb2, lineage_pb2_grpc

log = logging.getLogger(__name__)

ATTEMPTS = 5
FIRST_BACKOFF_S = 0.2
CALL_TIMEOUT_S = 5.0


def to_proto(change: RouteChange) -> lineage_pb2.RouteChange:
    seconds, micros = divmod(change.changed_at_us, 1_000_000)
    return lineage_pb2.RouteChange(
        changed_at=Timestamp(seconds=seconds, nanos=micros * 1000),
        config_version=change.config_version,
        diff_json=orjson.dumps(change.diff).decode(),
        targets=[
            lineage_pb2.ArmTarget(
                decision_point=t.decision_point,
                arm=t.arm,
                model_name=t.model_name,
                model_version=t.model_version,
                weight=t.weight,
            )
            for t in change.targets
        ],
        source=change.gateway_instance,
    )


class LineageRouteChangeSink:
    """Create inside the running event loop; ``close`` waits briefly for changes in flight."""

    def __init__(self, endpoint: str) -> None:
        self._endpoint = endpoint
        self._channel = grpc.aio.insecure_channel(endpoint)
        self._stub = lineage_pb2_grpc.LineageServiceStub(self._channel)
        self._tasks: set[asyncio.Task[None]] = set()

    def emit(self, change: RouteChange) -> None:
        task = asyncio.create_task(self._send(change))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, change: RouteChange) -> None:
        request = lineage_pb2.RecordRouteChangeRequest(change=to_proto(change))
        backoff = FIRST_BACKOFF_S
        for attempt in range(1, ATTEMPTS + 1):
            try:
                await self._stub.RecordRouteChange(request, timeout=CALL_TIMEOUT_S)
                return
            except grpc.aio.AioRpcError as e:
                retryable = e.code() in (
                    grpc.StatusCode.UNAVAILABLE,
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                )
                if not retryable or attempt == ATTEMPTS:
                    log.error(
                        "route change to config %s not recorded by the lineage store at %s: %s",
                        change.config_version,
                        self._endpoint,
                        e.details(),
                    )
                    return
            await asyncio.sleep(backoff)
            backoff *= 2

    async def close(self, timeout_s: float = 2.0) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout_s)
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._channel.close()


class FanOutRouteChangeSink:
    """Emits each change to several sinks (the log, and the lineage store)."""

    def __init__(self, *sinks: RouteChangeSink) -> None:
        self._sinks = sinks

    def emit(self, change: RouteChange) -> None:
        for sink in self._sinks:
            sink.emit(change)
