"""Sends route-change events, and the manifests they refer to, to the lineage store.

What served which decision point, and when, is only answerable if every route change reaches the
store; so changes are delivered in order by one background task and retried until the store
acknowledges them (the store records both idempotently), with a capped back-off, however long it is
down. Each change is preceded by a RegisterManifest for every manifest in the model directory, so
every decision record resolves to its model's manifest. A refusal of the caller (the store does
not know or allow this gateway yet) is retried like an outage, since granting the permission later
must not leave a hole in the history; only a request the store finds malformed is logged and
skipped. A change still unsent when the gateway stops is logged; the next gateway start announces
the config in force again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

import grpc
import orjson
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from gateway.routing.changes import RouteChange, RouteChangeSink
from lineage.v1 import lineage_pb2, lineage_pb2_grpc
from runtimes.manifest import MANIFEST_FILE, find_model_folders
from security.tls import ClientTls, ReopeningChannel

log = logging.getLogger(__name__)

FIRST_BACKOFF_S = 0.2
MAX_BACKOFF_S = 5.0
CALL_TIMEOUT_S = 5.0
MAX_PENDING = 10_000
# What retrying the same request can never fix; everything else is the store's, the network's or
# the policy's state, retried without limit.
_MALFORMED = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.ALREADY_EXISTS,
    }
)
_TRANSIENT = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
REFUSAL_LOG_EVERY_S = 60.0


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
        unapproved=list(change.unapproved),
    )


class LineageRouteChangeSink:
    """Create inside the running event loop; ``close`` gives pending sends a short grace."""

    def __init__(
        self, endpoint: str, model_dir: Path | None = None, tls: ClientTls | None = None
    ) -> None:
        self._endpoint = endpoint
        self._model_dir = model_dir
        # Reopened when the gateway's client certificate is rotated (security.tls).
        self._channel = ReopeningChannel(endpoint, tls)
        self._stub_on = self._channel.channel
        self._stub_now = lineage_pb2_grpc.LineageServiceStub(self._stub_on)
        self._pending: asyncio.Queue[Message] = asyncio.Queue(MAX_PENDING)
        self._sender = asyncio.create_task(self._deliver())

    def emit(self, change: RouteChange) -> None:
        requests: list[Message] = [
            lineage_pb2.RegisterManifestRequest(manifest_json=text) for text in self._manifests()
        ]
        requests.append(lineage_pb2.RecordRouteChangeRequest(change=to_proto(change)))
        for request in requests:
            try:
                self._pending.put_nowait(request)
            except asyncio.QueueFull:
                log.error(
                    "lineage store at %s unreachable with %d events pending; route change to "
                    "config %s not queued",
                    self._endpoint,
                    MAX_PENDING,
                    change.config_version,
                )
                return

    def _manifests(self) -> list[str]:
        if self._model_dir is None:
            return []
        # The exact text, as it accompanies the artifact: the store keeps it by artifact sha256.
        return [(f / MANIFEST_FILE).read_text() for f in find_model_folders(self._model_dir)]

    async def _deliver(self) -> None:
        while True:
            request = await self._pending.get()
            await self._send_until_acknowledged(request)
            self._pending.task_done()

    def _stub(self) -> lineage_pb2_grpc.LineageServiceStub:
        channel = self._channel.channel
        if channel is not self._stub_on:
            self._stub_now = lineage_pb2_grpc.LineageServiceStub(channel)
            self._stub_on = channel
        return self._stub_now

    async def _send_until_acknowledged(self, request: Message) -> None:
        backoff = FIRST_BACKOFF_S
        logged_at: float | None = None
        while True:
            stub = self._stub()
            call = (
                stub.RegisterManifest
                if isinstance(request, lineage_pb2.RegisterManifestRequest)
                else stub.RecordRouteChange
            )
            try:
                await call(request, timeout=CALL_TIMEOUT_S)
                return
            except grpc.aio.AioRpcError as e:
                if e.code() in _MALFORMED:
                    log.error(
                        "lineage store at %s refused %s: %s %s",
                        self._endpoint,
                        type(request).__name__,
                        e.code().name,
                        e.details(),
                    )
                    return
                now = asyncio.get_running_loop().time()
                if e.code() not in _TRANSIENT and (
                    logged_at is None or now - logged_at >= REFUSAL_LOG_EVERY_S
                ):
                    logged_at = now
                    log.error(
                        "lineage store at %s refused %s (%s %s): retrying until it is "
                        "accepted; %d events wait behind it",
                        self._endpoint,
                        type(request).__name__,
                        e.code().name,
                        e.details(),
                        self._pending.qsize(),
                    )
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_S)

    async def close(self, timeout_s: float = 2.0) -> None:
        try:
            await asyncio.wait_for(self._pending.join(), timeout_s)
        except TimeoutError:
            log.error(
                "stopping with route-change/manifest events not delivered to %s (%d queued)",
                self._endpoint,
                self._pending.qsize(),
            )
        self._sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._sender
        await self._channel.close()


class FanOutRouteChangeSink:
    """Emits each change to several sinks (the log, and the lineage store)."""

    def __init__(self, *sinks: RouteChangeSink) -> None:
        self._sinks = sinks

    def emit(self, change: RouteChange) -> None:
        for sink in self._sinks:
            sink.emit(change)
