"""The decision service: route, validate, score, decide, record. No transport in here.

``DecisionService.score`` takes a request already converted from protobuf and returns the
decision record; it raises only GatewayError subclasses for anything a caller did or a runtime
did. Each decision gets one span (``SPAN_NAME``) whose ids go into the record, and the record goes
to the DecisionSink before the span ends.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from opentelemetry.trace import Tracer

from gateway.errors import (
    InvalidRequest,
    RuntimeDeadlineExceeded,
    UnknownDecisionPoint,
    UnknownModelVersion,
)
from gateway.ids import UuidV7Generator
from gateway.inference import ModelClient
from gateway.routes import DecisionPoint, ModelTarget, Routes
from gateway.sinks import DecisionSink
from gateway.validation import FeatureInput, request_violations
from governance.record import (
    DECISION_ID_ATTRIBUTE,
    SPAN_NAME,
    DecisionRecord,
    features_sha256,
)

ARM_PRIMARY = "primary"
ARM_PINNED = "pinned"


@dataclass(frozen=True, slots=True)
class ScoreInput:
    """One Score call as the core sees it: plain python values, None for an unset feature."""

    request_id: str
    decision_point: str
    entity_key: str
    features: Mapping[str, FeatureInput]
    model_version: str = ""


class DecisionService:
    """Turns a ScoreInput into a recorded decision. Swap ``routes`` to change routing."""

    def __init__(
        self,
        routes: Routes,
        client: ModelClient,
        tracer: Tracer,
        sink: DecisionSink,
        instance: str,
    ) -> None:
        self.routes = routes
        self._client = client
        self._tracer = tracer
        self._sink = sink
        self._instance = instance
        self._ids = UuidV7Generator()

    def _target(self, point: DecisionPoint, pinned: str) -> tuple[ModelTarget, str]:
        if not pinned:
            return point.primary, ARM_PRIMARY
        target = point.versions.get(pinned)
        if target is None:
            raise UnknownModelVersion(
                f"model_version: {point.primary.model} has no version {pinned!r} "
                f"(known: {', '.join(sorted(point.versions))})"
            )
        return target, ARM_PINNED

    async def score(
        self,
        request: ScoreInput,
        *,
        received_ns: int | None = None,
        time_remaining_s: float | None = None,
    ) -> DecisionRecord:
        """Scores ``request``; ``time_remaining_s`` is what is left of the caller's deadline."""
        if received_ns is None:
            received_ns = time.time_ns()
        violations = request_violations(
            request.request_id, request.decision_point, request.entity_key
        )
        if violations:
            raise InvalidRequest(violations)
        routes = self.routes
        point = routes.decision_points.get(request.decision_point)
        if point is None:
            raise UnknownDecisionPoint(
                f"decision_point: no route for {request.decision_point!r} "
                f"(known: {', '.join(sorted(routes.decision_points))})"
            )
        target, arm = self._target(point, request.model_version)
        snapshot = target.validator.validate(request.features)

        budget = point.timeout_s
        if time_remaining_s is not None and time_remaining_s < budget:
            budget = time_remaining_s
            if budget <= 0:
                raise RuntimeDeadlineExceeded(
                    f"deadline: the caller's deadline passed before {target.served_name} was called"
                )
        decision_id = self._ids.new(received_ns)
        answer = await self._client.infer(target, snapshot, budget, decision_id)
        decision = point.policy.decide(answer.score)
        decided_ns = time.time_ns()

        span = self._tracer.start_span(SPAN_NAME, start_time=received_ns)
        context = span.get_span_context()
        record = DecisionRecord(
            decision_id=decision_id,
            request_id=request.request_id,
            decision_point=point.name,
            entity_key=request.entity_key,
            received_at_us=received_ns // 1000,
            decided_at_us=decided_ns // 1000,
            model_name=answer.model_name,
            model_version=answer.model_version,
            model_sha256=answer.artifact_sha256,
            runtime_instance=answer.runtime_instance,
            arm=arm,
            config_version=routes.config_version,
            fallback_reason="",
            attempts=1,
            features=snapshot,
            features_sha256=features_sha256(snapshot),
            feature_schema_version=target.manifest.feature_schema_version,
            score=answer.score,
            decision=decision,
            policy_version=point.policy.version,
            trace_id=f"{context.trace_id:032x}",
            span_id=f"{context.span_id:016x}",
            gateway_instance=self._instance,
        )
        # Ids and outcome only: feature values and the entity key stay inside the record.
        span.set_attributes(
            {
                DECISION_ID_ATTRIBUTE: decision_id,
                "scoregate.request_id": record.request_id,
                "scoregate.decision_point": record.decision_point,
                "scoregate.model.name": record.model_name,
                "scoregate.model.version": record.model_version,
                "scoregate.model.sha256": record.model_sha256,
                "scoregate.arm": arm,
                "scoregate.score": record.score,
                "scoregate.decision": decision,
                "scoregate.policy_version": record.policy_version,
                "scoregate.config_version": record.config_version,
                "scoregate.features_sha256": record.features_sha256,
            }
        )
        self._sink.emit(record, span)
        span.end(end_time=decided_ns)
        return record
