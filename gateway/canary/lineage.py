"""The controller's side of the lineage store, over ``lineage.v1.LineageService`` only.

Three questions and one record: the arms compared over a window (``CompareArms``), what the
gateways serve now (``GetServingAt``: a gateway records each reload, so the weight it took is
there), the run's earlier steps (``ListRouteChanges``), and each step recorded as a route
change with its analysis (``RecordRouteChange``). TLS and the bearer token follow
docs/security.md; the store records the authenticated principal as who initiated each step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import grpc
import orjson
from google.protobuf.timestamp_pb2 import Timestamp

from gateway.canary.errors import LineageError
from gateway.canary.verdict import ArmEvidence, Evidence
from lineage.v1 import lineage_pb2, lineage_pb2_grpc
from security.tls import ClientTls

CALL_TIMEOUT_S = 10.0


def timestamp(at_us: int) -> Timestamp:
    seconds, micros = divmod(at_us, 1_000_000)
    return Timestamp(seconds=seconds, nanos=micros * 1000)


def us(ts: Timestamp) -> int:
    return ts.seconds * 1_000_000 + ts.nanos // 1000


def _arm(a: lineage_pb2.ArmWindow) -> ArmEvidence:
    return ArmEvidence(
        decisions=a.decisions,
        fallbacks=a.fallbacks,
        errors=a.errors,
        latency_p99_ms=a.latency_p99_ms,
        decision_counts=dict(a.decision_counts),
        model_versions=tuple(a.model_versions),
    )


def open_channel(endpoint: str, tls: ClientTls | None, token: str = "") -> grpc.aio.Channel:
    """Plaintext without ``tls``; a bearer token is only ever sent over TLS."""
    if tls is None:
        if token:
            raise LineageError("a lineage token needs TLS: set the lineage CA file")
        return grpc.aio.insecure_channel(endpoint)
    credentials = tls.channel_credentials()
    if token:
        credentials = grpc.composite_channel_credentials(
            credentials, grpc.access_token_call_credentials(token)
        )
    return grpc.aio.secure_channel(endpoint, credentials, options=tls.channel_options())


class LineageCanaryClient:
    def __init__(self, endpoint: str, channel: grpc.aio.Channel) -> None:
        self._endpoint = endpoint
        self._channel = channel
        self._stub = lineage_pb2_grpc.LineageServiceStub(channel)

    async def close(self) -> None:
        await self._channel.close()

    def _failed(self, what: str, e: grpc.aio.AioRpcError) -> LineageError:
        return LineageError(
            f"lineage store at {self._endpoint}: {what} failed: {e.code().name} {e.details()}"
        )

    async def compare(
        self, point: str, since_us: int, until_us: int, canary_served_names: Sequence[str]
    ) -> Evidence:
        request = lineage_pb2.CompareArmsRequest(
            decision_point=point,
            since=timestamp(since_us),
            until=timestamp(until_us),
            canary_served_names=list(canary_served_names),
        )
        try:
            reply = await self._stub.CompareArms(request, timeout=CALL_TIMEOUT_S)
        except grpc.aio.AioRpcError as e:
            raise self._failed("CompareArms", e) from None
        return Evidence(
            since_us,
            until_us,
            _arm(reply.primary),
            _arm(reply.canary),
            reply.score_psi,
            reply.decision_mix_shift,
        )

    async def in_force(self, point: str, at_us: int) -> lineage_pb2.RouteChange | None:
        """The route change in force at ``at_us`` (the latest effective by then)."""
        request = lineage_pb2.GetServingAtRequest(
            decision_point=point, at=timestamp(at_us), window_s=1, limit=1
        )
        try:
            reply = await self._stub.GetServingAt(request, timeout=CALL_TIMEOUT_S)
        except grpc.aio.AioRpcError as e:
            raise self._failed("GetServingAt", e) from None
        return reply.in_force if reply.HasField("in_force") else None

    async def record(self, change: lineage_pb2.RouteChange) -> lineage_pb2.RouteChange:
        request = lineage_pb2.RecordRouteChangeRequest(change=change)
        try:
            reply = await self._stub.RecordRouteChange(request, timeout=CALL_TIMEOUT_S)
        except grpc.aio.AioRpcError as e:
            raise self._failed("RecordRouteChange", e) from None
        stored: lineage_pb2.RouteChange = reply.change
        return stored

    async def steps(self, point: str, since_us: int = 0) -> list[lineage_pb2.RouteChange]:
        """The canary steps recorded for ``point``, oldest first."""
        request = lineage_pb2.ListRouteChangesRequest(decision_point=point, analysed_only=True)
        if since_us:
            request.since.CopyFrom(timestamp(since_us))
        try:
            reply = await self._stub.ListRouteChanges(request, timeout=CALL_TIMEOUT_S)
        except grpc.aio.AioRpcError as e:
            raise self._failed("ListRouteChanges", e) from None
        return list(reply.changes)


def canary_weight_in_force(change: lineage_pb2.RouteChange | None, point: str) -> float | None:
    """The canary weight (percent) ``change`` gives ``point``; None when it names no canary."""
    if change is None:
        return None
    for t in change.targets:
        if t.decision_point == point and t.arm == "canary":
            return t.weight * 100
    return 0.0 if any(t.decision_point == point for t in change.targets) else None


def same_weight(a: float | None, b: float) -> bool:
    return a is not None and math.isclose(a, b, abs_tol=1e-6)


def analysis_of(change: lineage_pb2.RouteChange) -> dict[str, object]:
    value = orjson.loads(change.analysis_json) if change.analysis_json else {}
    return value if isinstance(value, dict) else {}
