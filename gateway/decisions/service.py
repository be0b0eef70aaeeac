"""The decision service: route, validate, score, decide, record. No transport in here.

``DecisionService.score`` takes a request already converted from protobuf and returns the
decision record; it raises only GatewayError subclasses for anything a caller did or a runtime
did. Routing per request: a pinned version answers alone (no canary, shadow or fallback: a replay
is that model or nothing); otherwise the entity's sticky bucket picks primary or canary, shadows
are started beside it, and when the routed model cannot answer the fallback chain does, flagged
with the reason. With a tracer, each decision gets one span (``SPAN_NAME``) whose ids go into the
record, and the record goes to the DecisionSink before the span ends; without one (no tracing
backend configured) no SDK span is built at all: the record and the response still get W3C-valid
trace and span ids, drawn at random. A ScoreBatch call gets one span for the batch, not one per row
(unless the sink carries records on the decision spans themselves).

One deadline budget: the caller's deadline or the route's timeout, whichever is sooner, less the
fallback's reserve when there is a fallback; every runtime attempt gets what is left of it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from opentelemetry.trace import INVALID_SPAN, Span, Tracer

from gateway.attempts.breaker import Breakers
from gateway.attempts.budgets import RetryBudget
from gateway.attempts.caller import CallPlan, ModelCaller, Tally
from gateway.attempts.rules import RulesAnswer, RulesScorer
from gateway.decisions.admission import AdmissionGate
from gateway.decisions.ids import UuidV7Generator
from gateway.decisions.shadows import ShadowRunner
from gateway.decisions.validation import FeatureInput, FeatureValidator, request_violations
from gateway.errors import (
    FieldViolation,
    GatewayError,
    InvalidRequest,
    ModelRuntimeError,
    Overloaded,
    RuntimeDeadlineExceeded,
    UnknownDecisionPoint,
    UnknownModelVersion,
)
from gateway.metrics import GatewayMetrics
from gateway.recording.sinks import DecisionSink, redacted_attributes
from gateway.routing import splits as split
from gateway.routing.compiled import DecisionPoint, Routes
from gateway.runtime_client.protocol import ModelAnswer, ModelClient
from gateway.runtime_client.targets import ModelTarget
from lineage.v1.record import DecisionRecord, FeatureScalar, features_sha256
from lineage.v1.spans import SPAN_NAME

log = logging.getLogger(__name__)

ARM_PRIMARY = "primary"
ARM_CANARY = "canary"
ARM_PINNED = "pinned"
ARM_SHADOW = "shadow"
ARM_FALLBACK = "fallback"
RULES_MODEL_NAME = "rules"
PARENT_DECISION_ID = "parent_decision_id"
"""Key in a shadow record's ``extra``: the decision the caller got."""
BATCH_SIZE = "batch_size"
"""Key in a model answer's ``extra``: rows in the runtime call that scored it."""
DEFAULT_SHADOW_MAX_IN_FLIGHT = 64
MAX_BATCH_ROWS = 1000
BATCH_SPAN_NAME = "scoregate.decision_batch"
_MAX_ERROR_CHARS = 300


def _random_trace_id() -> str:
    """A W3C-valid trace id (32 hex digits, not all zero) for a decision with no SDK span."""
    return f"{random.getrandbits(128) or 1:032x}"


def _random_span_id() -> str:
    """A W3C-valid span id (16 hex digits, not all zero)."""
    return f"{random.getrandbits(64) or 1:016x}"


# ScoreInput, _Answer and ModelAnswer are made per row and never kept: plain (not frozen)
# dataclasses, whose __init__ assigns attributes directly instead of calling
# object.__setattr__ per field (3-4x faster; the frozen ones were ~16% of the gateway's main
# thread in a ScoreBatch profile, together with the decision record's).
@dataclass(slots=True)
class ScoreInput:
    """One Score call as the core sees it: plain python values, None for an unset feature."""

    request_id: str
    decision_point: str
    entity_key: str
    features: Mapping[str, FeatureInput]
    model_version: str = ""


_Member = tuple[int, ScoreInput, dict[str, FeatureScalar]]
"""A batch row: its index, the row, its validated snapshot."""


@dataclass(slots=True)
class _Answer:
    """What produced a score: a model version (with its answer) or a rules file."""

    score: float
    model_name: str
    model_version: str
    model_sha256: str
    runtime_instance: str
    reasons: RulesAnswer | None = None
    endpoint: str = ""
    batch_size: int = 1

    @classmethod
    def of_model(cls, answer: ModelAnswer) -> _Answer:
        return cls(
            answer.score,
            answer.model_name,
            answer.model_version,
            answer.artifact_sha256,
            answer.runtime_instance,
            endpoint=answer.endpoint,
            batch_size=answer.batch_size,
        )

    @classmethod
    def of_rules(cls, scorer: RulesScorer, answer: RulesAnswer, instance: str) -> _Answer:
        return cls(answer.score, scorer.name, scorer.version, scorer.sha256, instance, answer)


class DecisionService:
    """Turns a ScoreInput into a recorded decision. ``apply`` swaps in a reloaded config."""

    def __init__(
        self,
        routes: Routes,
        client: ModelClient,
        tracer: Tracer | None,
        sink: DecisionSink,
        instance: str,
        *,
        metrics: GatewayMetrics | None = None,
        max_in_flight: int | None = None,
        shadow_max_in_flight: int = DEFAULT_SHADOW_MAX_IN_FLIGHT,
    ) -> None:
        self.metrics = metrics or GatewayMetrics()
        self.breakers = Breakers(routes.breaker, self.metrics.circuit_changed)
        self.shadows = ShadowRunner(shadow_max_in_flight)
        self.admission = AdmissionGate(max_in_flight, self.metrics)
        self._client = client
        self._caller = ModelCaller(client, self.breakers, self.metrics)
        self._tracer = tracer
        self._sink = sink
        self._instance = instance
        self._ids = UuidV7Generator()
        self._budgets: dict[str, RetryBudget] = {}
        self._validators: dict[str, FeatureValidator] = {}
        self.routes = routes
        self.apply(routes)

    def apply(self, routes: Routes) -> None:
        """Serves ``routes`` from the next request on; requests in flight keep the old ones."""
        self._client.add_targets(routes.targets)
        # Compiled per config, keyed by served name: a request's check is one lookup away.
        self._validators = {t.served_name: FeatureValidator(t.manifest) for t in routes.targets}
        self.breakers.set_policy(routes.breaker)
        for name, point in routes.decision_points.items():
            budget = self._budgets.get(name)
            if budget is None:
                self._budgets[name] = RetryBudget(point.retry)
            else:
                budget.update(point.retry)
        self.routes = routes
        self.metrics.config_applied(routes.config_version)

    def _target(self, point: DecisionPoint, request: ScoreInput) -> tuple[ModelTarget, str]:
        pinned = request.model_version
        if pinned:
            target = point.versions.get(pinned)
            if target is None:
                raise UnknownModelVersion(
                    f"model_version: {point.primary.model} has no version {pinned!r} "
                    f"(known: {', '.join(sorted(point.versions))})"
                )
            return target, ARM_PINNED
        canary = point.canary
        if canary is not None:
            key = (
                request.entity_key if canary.stickiness_key == "entity_key" else request.request_id
            )
            if split.on_split(point.name, key, canary.buckets):
                return canary.target, ARM_CANARY
        return point.primary, ARM_PRIMARY

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
        started = time.monotonic()
        if not self.admission.try_enter():
            raise Overloaded(
                f"overloaded: {self.admission.in_flight} requests in flight (the bound); "
                "retry with back-off or on another gateway"
            )
        try:
            self._sink.check_capacity()
            record = await self._score(request, received_ns, started, time_remaining_s)
        except GatewayError as e:
            point = request.decision_point
            label = point if point in self.routes.decision_points else "unknown"
            self.metrics.requests.labels(label, "", "", e.code.name).inc()
            raise
        finally:
            self.admission.leave()
        self.metrics.decided(
            record.decision_point,
            record.arm,
            record.model_version,
            record.decision,
            time.monotonic() - started,
        )
        return record

    async def _score(
        self,
        request: ScoreInput,
        received_ns: int,
        started: float,
        time_remaining_s: float | None,
    ) -> DecisionRecord:
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
        target, arm = self._target(point, request)
        snapshot = self._validators[target.served_name].validate(request.features)

        end = started + point.timeout_s
        if time_remaining_s is not None and started + time_remaining_s < end:
            end = started + time_remaining_s
            if time_remaining_s <= 0:
                raise RuntimeDeadlineExceeded(
                    f"deadline: the caller's deadline passed before {target.served_name} was called"
                )
        fallback = point.fallback if arm != ARM_PINNED else None
        deadline = end - (fallback.reserve_s if fallback is not None else 0.0)
        decision_id = self._ids.new(received_ns)
        budget = self._budgets[point.name]
        budget.deposit()
        if arm != ARM_PINNED:
            self._start_shadows(point, request, snapshot, decision_id, received_ns)

        tally = Tally()
        plan = CallPlan(point.name, point.retry, budget, point.hedge)
        try:
            answer = await self._caller.call(target, snapshot, decision_id, deadline, plan, tally)
        except ModelRuntimeError as e:
            if fallback is None:
                raise
            return await self._fall_back(
                point, request, target, snapshot, e, tally, deadline, received_ns, decision_id
            )
        return await self._record(
            point, request, target, arm, _Answer.of_model(answer), snapshot, tally.attempts,
            received_ns, decision_id, routes.config_version,
        )  # fmt: skip

    async def _fall_back(
        self,
        point: DecisionPoint,
        request: ScoreInput,
        failed: ModelTarget,
        snapshot: dict[str, FeatureScalar],
        error: ModelRuntimeError,
        tally: Tally,
        deadline: float,
        received_ns: int,
        decision_id: str,
    ) -> DecisionRecord:
        """The chain's first answer, flagged with why the routed model did not answer."""
        assert point.fallback is not None
        reason = error.fallback_reason
        errors = [str(error)]
        config_version = self.routes.config_version
        for step in point.fallback.chain:
            if isinstance(step, RulesScorer):
                answer = _Answer.of_rules(step, step.score(snapshot), self._instance)
            else:
                if step == failed or deadline - time.monotonic() <= 0:
                    continue
                plan = CallPlan(point.name)  # no retries or hedges: the budget is nearly spent
                try:
                    model = await self._caller.call(
                        step, snapshot, decision_id, deadline, plan, tally
                    )
                except ModelRuntimeError as e:
                    errors.append(str(e))
                    continue
                answer = _Answer.of_model(model)
            self.metrics.fallbacks.labels(point.name, reason).inc()
            extra = {
                "fallback_from": failed.served_name,
                "fallback_error": errors[0][:_MAX_ERROR_CHARS],
            }
            return await self._record(
                point, request, failed, ARM_FALLBACK, answer, snapshot, tally.attempts,
                received_ns, decision_id, config_version, reason=reason, extra=extra,
            )  # fmt: skip
        error.args = (f"{error} (and no fallback could answer: {'; '.join(errors[1:])})",)
        raise error

    def _start_shadows(
        self,
        point: DecisionPoint,
        request: ScoreInput,
        snapshot: dict[str, FeatureScalar],
        parent_id: str,
        received_ns: int,
    ) -> None:
        for shadow in point.shadows:
            version = shadow.target.version
            if not split.on_split(f"{point.name}/shadow", request.entity_key, shadow.buckets):
                continue
            work = self._shadow(point, request, shadow.target, snapshot, parent_id, received_ns)
            if not self.shadows.submit(work):
                self.metrics.shadows.labels(point.name, version, "dropped").inc()

    async def _shadow(
        self,
        point: DecisionPoint,
        request: ScoreInput,
        target: ModelTarget,
        snapshot: dict[str, FeatureScalar],
        parent_id: str,
        received_ns: int,
    ) -> None:
        """Scores a mirror and records it; never raises into anything a caller waits for."""
        config_version = self.routes.config_version
        decision_id = self._ids.new(time.time_ns())
        tally = Tally()
        try:
            answer = await self._caller.call(
                target, snapshot, decision_id, time.monotonic() + point.timeout_s,
                CallPlan(point.name), tally,
            )  # fmt: skip
        except ModelRuntimeError as e:
            self.metrics.shadows.labels(point.name, target.version, "failed").inc()
            log.debug("shadow %s for %s failed: %s", target.served_name, parent_id, e)
            return
        self.metrics.shadows.labels(point.name, target.version, "scored").inc()
        await self._record(
            point, request, target, ARM_SHADOW, _Answer.of_model(answer), snapshot,
            tally.attempts, received_ns, decision_id, config_version,
            extra={PARENT_DECISION_ID: parent_id},
        )  # fmt: skip

    def _make_record(
        self,
        point: DecisionPoint,
        request: ScoreInput,
        target: ModelTarget,
        arm: str,
        answer: _Answer,
        snapshot: dict[str, FeatureScalar],
        attempts: int,
        received_ns: int,
        decided_ns: int,
        decision_id: str,
        config_version: str,
        trace_id: str,
        span_id: str,
        reason: str,
        extra: dict[str, str] | None,
    ) -> DecisionRecord:
        extra = dict(extra) if extra else {}
        if answer.endpoint:
            extra["endpoint"] = answer.endpoint
            # Rows in the runtime call that scored this one (micro-batching, ScoreBatch).
            extra[BATCH_SIZE] = str(answer.batch_size)
        rules = answer.reasons
        return DecisionRecord(
            decision_id=decision_id,
            request_id=request.request_id,
            decision_point=point.name,
            entity_key=request.entity_key,
            received_at_us=received_ns // 1000,
            decided_at_us=decided_ns // 1000,
            model_name=answer.model_name,
            model_version=answer.model_version,
            model_sha256=answer.model_sha256,
            runtime_instance=answer.runtime_instance,
            arm=arm,
            config_version=config_version,
            fallback_reason=reason,
            attempts=attempts,
            features=snapshot,
            features_sha256=features_sha256(snapshot),
            feature_schema_version=target.feature_schema_version,
            score=answer.score,
            decision=point.policy.decide(answer.score),
            policy_version=point.policy.version,
            trace_id=trace_id,
            span_id=span_id,
            gateway_instance=self._instance,
            reasons=rules.reasons if rules is not None else (),
            reason_catalogue_version=answer.model_version if rules is not None else "",
            extra=extra,
        )

    async def _record(
        self,
        point: DecisionPoint,
        request: ScoreInput,
        target: ModelTarget,
        arm: str,
        answer: _Answer,
        snapshot: dict[str, FeatureScalar],
        attempts: int,
        received_ns: int,
        decision_id: str,
        config_version: str,
        *,
        reason: str = "",
        extra: dict[str, str] | None = None,
    ) -> DecisionRecord:
        decided_ns = time.time_ns()
        tracer = self._tracer
        span: Span
        if tracer is None:
            span = INVALID_SPAN
            trace_id, span_id = _random_trace_id(), _random_span_id()
        else:
            span = tracer.start_span(SPAN_NAME, start_time=received_ns)
            context = span.get_span_context()
            trace_id, span_id = f"{context.trace_id:032x}", f"{context.span_id:016x}"
        record = self._make_record(
            point, request, target, arm, answer, snapshot, attempts, received_ns, decided_ns,
            decision_id, config_version, trace_id, span_id, reason, extra,
        )  # fmt: skip
        if span.is_recording():
            _set_span_attributes(span, record)
        await self._sink.emit(record, span)
        span.end(end_time=decided_ns)
        return record

    async def score_batch(
        self,
        decision_point: str,
        rows: Sequence[ScoreInput],
        *,
        model_version: str = "",
        time_remaining_s: float | None = None,
    ) -> list[DecisionRecord | GatewayError]:
        """Scores ``rows`` (their own decision_point/model_version are ignored) with one runtime
        call per routed version; each row gets its record, or the error Score would have raised.

        Raises for the whole call only what is true of every row: unknown decision point or
        pinned version, too many rows, overload. No shadows for batches.
        """
        received_ns = time.time_ns()
        started = time.monotonic()
        if len(rows) > MAX_BATCH_ROWS:
            raise InvalidRequest(
                [FieldViolation("rows", f"{len(rows)} rows; at most {MAX_BATCH_ROWS} per call")]
            )
        routes = self.routes
        point = routes.decision_points.get(decision_point)
        if point is None:
            raise UnknownDecisionPoint(
                f"decision_point: no route for {decision_point!r} "
                f"(known: {', '.join(sorted(routes.decision_points))})"
            )
        if model_version and model_version not in point.versions:
            raise UnknownModelVersion(
                f"model_version: {point.primary.model} has no version {model_version!r} "
                f"(known: {', '.join(sorted(point.versions))})"
            )
        if not self.admission.try_enter():
            raise Overloaded(f"overloaded: {self.admission.in_flight} requests in flight")
        try:
            results = await self._score_batch(
                point, rows, model_version, received_ns, started, time_remaining_s
            )
        finally:
            self.admission.leave()
        elapsed = time.monotonic() - started
        # Counted per label set, not per row: a labels() lookup costs more than the increment.
        outcomes: Counter[tuple[str, str, str]] = Counter()
        for result in results:
            if isinstance(result, DecisionRecord):
                outcomes[(result.arm, result.model_version, result.decision)] += 1
            else:
                outcomes[("", "", result.code.name)] += 1
        for (arm, version, outcome), count in outcomes.items():
            if arm:
                self.metrics.decided(point.name, arm, version, outcome, elapsed, count)
            else:
                self.metrics.requests.labels(point.name, arm, version, outcome).inc(count)
        return results

    async def _score_batch(
        self,
        point: DecisionPoint,
        rows: Sequence[ScoreInput],
        model_version: str,
        received_ns: int,
        started: float,
        time_remaining_s: float | None,
    ) -> list[DecisionRecord | GatewayError]:
        config_version = self.routes.config_version
        results: list[DecisionRecord | GatewayError | None] = [None] * len(rows)
        # Rows grouped by the version and arm that answer them: one runtime call per group.
        groups: dict[tuple[str, str], tuple[ModelTarget, list[_Member]]] = {}
        for i, row in enumerate(rows):
            row = ScoreInput(
                row.request_id, point.name, row.entity_key, row.features, model_version
            )
            try:
                violations = request_violations(row.request_id, point.name, row.entity_key)
                if violations:
                    raise InvalidRequest(
                        [FieldViolation(f"rows[{i}].{v.field}", v.description) for v in violations]
                    )
                target, arm = self._target(point, row)
                try:
                    snapshot = self._validators[target.served_name].validate(row.features)
                except InvalidRequest as e:
                    raise InvalidRequest(
                        [
                            FieldViolation(f"rows[{i}].{v.field}", v.description)
                            for v in e.violations
                        ]
                    ) from None
            except UnknownModelVersion:
                raise
            except GatewayError as e:
                results[i] = e
                continue
            groups.setdefault((target.served_name, arm), (target, []))[1].append((i, row, snapshot))

        end = started + point.timeout_s
        if time_remaining_s is not None:
            end = min(end, started + time_remaining_s)
        budget = self._budgets[point.name]

        async def score_group(target: ModelTarget, arm: str, members: list[_Member]) -> None:
            fallback = point.fallback if arm != ARM_PINNED else None
            deadline = end - (fallback.reserve_s if fallback is not None else 0.0)
            snapshots = [m[2] for m in members]
            ids = self._ids.new_many(received_ns, len(members))
            budget.deposit()
            tally = Tally()
            plan = CallPlan(point.name, point.retry, budget, point.hedge)
            reason, extra = "", None
            answers: list[_Answer] | None = None
            try:
                answered = await self._caller.call_batch(
                    target, snapshots, ids[0], deadline, plan, tally
                )
                answers = [_Answer.of_model(a) for a in answered]
            except ModelRuntimeError as e:
                if fallback is None:
                    for i, _, _ in members:
                        results[i] = e
                    return
                reason = e.fallback_reason
                extra = {
                    "fallback_from": target.served_name,
                    "fallback_error": str(e)[:_MAX_ERROR_CHARS],
                }
                for step in fallback.chain:
                    if isinstance(step, RulesScorer):
                        answers = [
                            _Answer.of_rules(step, step.score(s), self._instance) for s in snapshots
                        ]
                        break
                    if step == target or deadline - time.monotonic() <= 0:
                        continue
                    try:
                        answered = await self._caller.call_batch(
                            step, snapshots, ids[0], deadline, CallPlan(point.name), tally
                        )
                    except ModelRuntimeError:
                        continue
                    answers = [_Answer.of_model(a) for a in answered]
                    break
                if answers is None:
                    for i, _, _ in members:
                        results[i] = e
                    return
                arm = ARM_FALLBACK
                self.metrics.fallbacks.labels(point.name, reason).inc(len(members))
            if self._tracer is not None and self._sink.records_on_spans:
                # Records ride on their own decision spans: one span (and record) per row.
                recorded = await asyncio.gather(
                    *(
                        self._record(
                            point, row, target, arm, answer, snapshot, tally.attempts,
                            received_ns, decision_id, config_version, reason=reason, extra=extra,
                        )
                        for (_, row, snapshot), answer, decision_id in zip(
                            members, answers, ids, strict=True
                        )
                    ),
                    return_exceptions=True,
                )  # fmt: skip
                for (i, _, _), outcome in zip(members, recorded, strict=True):
                    if not isinstance(outcome, DecisionRecord | GatewayError):
                        raise outcome
                    results[i] = outcome
                return
            try:
                records = await self._record_batch(
                    point, target, arm, members, answers, ids, tally.attempts, received_ns,
                    config_version, reason, extra,
                )  # fmt: skip
            except GatewayError as e:
                for i, _, _ in members:
                    results[i] = e
                return
            for (i, _, _), record in zip(members, records, strict=True):
                results[i] = record

        await asyncio.gather(*(score_group(t, a, m) for (_, a), (t, m) in groups.items()))
        assert all(r is not None for r in results)
        return [r for r in results if r is not None]

    async def _record_batch(
        self,
        point: DecisionPoint,
        target: ModelTarget,
        arm: str,
        members: list[_Member],
        answers: list[_Answer],
        ids: list[str],
        attempts: int,
        received_ns: int,
        config_version: str,
        reason: str,
        extra: dict[str, str] | None,
    ) -> list[DecisionRecord]:
        """A batch group's records, handed to the sink at once (one outbox group commit), under
        one span for the batch when tracing: the records share its trace id, each with its own
        span id (the span the outbox exports it as)."""
        decided_ns = time.time_ns()
        tracer = self._tracer
        span: Span = INVALID_SPAN
        if tracer is None:
            trace_id = _random_trace_id()
        else:
            span = tracer.start_span(BATCH_SPAN_NAME, start_time=received_ns)
            trace_id = f"{span.get_span_context().trace_id:032x}"
        make = self._make_record
        records = [
            make(
                point, row, target, arm, answer, snapshot, attempts, received_ns, decided_ns,
                decision_id, config_version, trace_id, _random_span_id(), reason, extra,
            )
            for (_, row, snapshot), answer, decision_id in zip(members, answers, ids, strict=True)
        ]  # fmt: skip
        try:
            if span.is_recording():
                # What general tracing may see of a batch: no row's features or entity key.
                span.set_attributes(
                    {
                        "scoregate.decision_point": point.name,
                        "scoregate.model.name": records[0].model_name,
                        "scoregate.model.version": records[0].model_version,
                        "scoregate.model.sha256": records[0].model_sha256,
                        "scoregate.arm": arm,
                        "scoregate.config_version": config_version,
                        "scoregate.fallback_reason": reason,
                        "scoregate.attempts": attempts,
                        "scoregate.batch.rows": len(records),
                        "scoregate.batch.first_decision_id": ids[0],
                    }
                )
            await self._sink.emit_batch(records, span)
        finally:
            span.end(end_time=decided_ns)
        return records

    async def close(self, grace_s: float = 1.0) -> None:
        """Lets shadow calls finish (bounded), before the client closes."""
        await self.shadows.drain(grace_s)


def _set_span_attributes(span: Span, record: DecisionRecord) -> None:
    """Ids and outcome only: feature values and the entity key stay inside the record."""
    span.set_attributes(redacted_attributes(record))
    parent = record.extra.get(PARENT_DECISION_ID)
    if parent is not None:
        span.set_attribute("scoregate.parent_decision_id", parent)
