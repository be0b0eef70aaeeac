"""The decision service: route, validate, score, decide, record. No transport in here.

A Score call is a batch of one: ``score`` and ``score_batch`` take the same path, so the two
cannot drift. Per call: admission, the sink's capacity, the decision point and any pinned
version, one ``Deadline`` (the caller's or the route's timeout, whichever is sooner). Per row:
the arm (a pinned version answers alone, with no canary, shadow or fallback: a replay is that
model or nothing; otherwise the entity's sticky bucket picks primary or canary) and the features
checked against that version's manifest. Rows are grouped by the version and arm that answer
them; each group is one runtime call (``FallbackScorer``: the version, else the fallback chain,
inside the deadline less the chain's reserve) and its records go to the ``Recorder`` together.
A Score call raises its row's error; a ScoreBatch call returns each row's record or error, and
raises only what is true of every row. Only Score calls start shadows.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence

from opentelemetry.trace import Tracer

from gateway.attempts.breaker import Breakers
from gateway.attempts.budgets import RetryBudget
from gateway.attempts.caller import CallPlan, ModelCaller, Tally
from gateway.attempts.fallback import Answered, FallbackScorer, Part
from gateway.attempts.reserve import ReserveEstimate
from gateway.caller import OPEN_ACCESS, Caller
from gateway.deadline import Deadline
from gateway.decisions.admission import AdmissionGate
from gateway.decisions.groups import ARM_FALLBACK, ARM_PINNED, Group, route_rows
from gateway.decisions.ids import UuidV7Generator
from gateway.decisions.inputs import MAX_BATCH_ROWS, ScoreInput
from gateway.decisions.shadows import ShadowTraffic
from gateway.decisions.validation import FeatureValidator, call_violations, request_violations
from gateway.errors import (
    FieldViolation,
    GatewayError,
    InvalidRequest,
    ModelRuntimeError,
    Overloaded,
    RuntimeDeadlineExceeded,
    Stopping,
    UnknownDecisionPoint,
    UnknownModelVersion,
)
from gateway.metrics import GatewayMetrics
from gateway.recording.recorder import Recorded, Recorder
from gateway.recording.records import Decided, RowOutcome
from gateway.recording.sinks import DecisionSink
from gateway.routing.compiled import DecisionPoint, Routes
from gateway.runtime_client.protocol import ModelClient
from lineage.v1.record import FALLBACK_ERROR, FALLBACK_FROM, DecisionRecord
from security.pseudonyms import KeyedHash

__all__ = ["MAX_BATCH_ROWS", "DecisionService", "ScoreInput"]

DEFAULT_SHADOW_MAX_IN_FLIGHT = 64


class DecisionService:
    """Turns ScoreInputs into recorded decisions. ``apply`` swaps in a reloaded config."""

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
        pseudonyms: KeyedHash | None = None,
    ) -> None:
        self.metrics = metrics or GatewayMetrics()
        self.breakers = Breakers(routes.breaker, self.metrics.circuit_changed)
        self.admission = AdmissionGate(max_in_flight, self.metrics)
        self._client = client
        caller = ModelCaller(client, self.breakers, self.metrics)
        self._scorer = FallbackScorer(caller, instance)
        self._recorder = Recorder(tracer, sink, instance, pseudonyms)
        self._reserve = ReserveEstimate()
        self.metrics.fallback_reserve.set_function(lambda: self._reserve.measured_s)
        self._ids = UuidV7Generator()
        self.shadows = ShadowTraffic(
            caller, self._recorder, self._ids, self.metrics, shadow_max_in_flight
        )
        self._budgets: dict[str, RetryBudget] = {}
        self._validators: dict[str, FeatureValidator] = {}
        self.routes = routes
        self.apply(routes)

    def apply(self, routes: Routes) -> None:
        """Serves ``routes`` from the next request on; requests in flight keep the old ones."""
        self._client.add_targets(routes.targets)
        # Compiled per config, keyed by served name: a row's check is one lookup away.
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

    async def score(
        self,
        request: ScoreInput,
        *,
        received_ns: int | None = None,
        time_remaining_s: float | None = None,
        caller: Caller = OPEN_ACCESS,
    ) -> DecisionRecord:
        """Scores ``request``; ``time_remaining_s`` is what is left of the caller's deadline,
        ``caller`` who asked (the transport edge has authenticated and authorised it)."""
        (result,) = await self._decide(
            request.decision_point, [request], request.model_version, received_ns,
            time_remaining_s, caller, batch=False,
        )  # fmt: skip
        if isinstance(result, GatewayError):
            raise result
        return result

    async def score_batch(
        self,
        decision_point: str,
        rows: Sequence[ScoreInput],
        *,
        model_version: str = "",
        time_remaining_s: float | None = None,
        caller: Caller = OPEN_ACCESS,
    ) -> list[Recorded]:
        """Scores ``rows`` (their own decision_point/model_version are ignored) with one runtime
        call per routed version; each row gets its record, or the error Score would have raised.

        Raises for the whole call only what is true of every row: unknown decision point or
        pinned version, too many rows, a deadline already passed, overload.
        """
        if len(rows) > MAX_BATCH_ROWS:
            raise InvalidRequest(
                [FieldViolation("rows", f"{len(rows)} rows; at most {MAX_BATCH_ROWS} per call")]
            )
        return await self._decide(
            decision_point, rows, model_version, None, time_remaining_s, caller, batch=True
        )

    async def _decide(
        self,
        name: str,
        rows: Sequence[ScoreInput],
        pinned: str,
        received_ns: int | None,
        time_remaining_s: float | None,
        caller: Caller,
        *,
        batch: bool,
    ) -> list[Recorded]:
        if received_ns is None:
            received_ns = time.time_ns()
        started = time.monotonic()
        if not self.admission.try_enter():
            if self.admission.closed:
                raise Stopping("the gateway is stopping; retry on another gateway")
            raise Overloaded(
                f"overloaded: {self.admission.in_flight} requests in flight (the bound); "
                "retry with back-off or on another gateway"
            )
        routes = self.routes
        try:
            self._recorder.check_capacity()
            if batch:
                violations = call_violations(name, pinned)
            else:
                (row,) = rows
                violations = request_violations(row.request_id, name, row.entity_key, pinned)
            if violations:
                raise InvalidRequest(violations)
            point = routes.decision_points.get(name)
            if point is None:
                raise UnknownDecisionPoint(
                    f"decision_point: no route for {name!r} "
                    f"(known: {', '.join(sorted(routes.decision_points))})"
                )
            target = None
            if pinned:
                target = point.versions.get(pinned)
                if target is None:
                    raise UnknownModelVersion(
                        f"model_version: {point.primary.model} has no version {pinned!r} "
                        f"(known: {', '.join(sorted(point.versions))})"
                    )
            deadline = Deadline.of_call(started, point.timeout_s, time_remaining_s)
            if time_remaining_s is not None and time_remaining_s <= 0:
                raise RuntimeDeadlineExceeded(
                    f"deadline: the caller's deadline passed before {point.name} was scored"
                )
            results: list[Recorded | None] = [None] * len(rows)
            groups = route_rows(point, rows, target, self._validators, results, batch=batch)
            config = routes.config_version
            work = [
                self._answer(point, g, deadline, received_ns, config, results, caller, batch)
                for g in groups
            ]
            if len(work) == 1:
                await work[0]
            elif work:
                await asyncio.gather(*work)
        except GatewayError as e:
            label = name if name in routes.decision_points else "unknown"
            self.metrics.requests.labels(label, "", "", e.code.name).inc(len(rows))
            raise
        finally:
            self.admission.leave()
        done = [r for r in results if r is not None]
        assert len(done) == len(rows), "every row has its record or its error"
        self._count(point.name, done, time.monotonic() - started)
        return done

    async def _answer(
        self,
        point: DecisionPoint,
        group: Group,
        deadline: Deadline,
        received_ns: int,
        config_version: str,
        results: list[Recorded | None],
        caller: Caller,
        batch: bool,
    ) -> None:
        """One group: one runtime call (or the fallback chain), then its records."""
        fallback = point.fallback if group.arm != ARM_PINNED else None
        if fallback is not None:
            deadline = deadline.earlier(self._reserve.reserve(fallback.reserve_s, deadline))
        count = len(group.rows)
        ids = [self._ids.new(received_ns)] if count == 1 else self._ids.new_many(received_ns, count)
        budget = self._budgets[point.name]
        budget.deposit()
        if not batch and group.arm != ARM_PINNED and point.shadows:
            row = group.rows[0]
            self.shadows.start(
                point, row.request_id, row.entity_key, group.features[0], ids[0], received_ns,
                config_version, caller,
            )  # fmt: skip
        tally = Tally()
        plan = CallPlan(point.name, point.retry, budget, point.hedge)
        try:
            if count == 1:
                answered = await self._scorer.answer(
                    group.target, group.features, ids[0], deadline, plan, fallback, tally
                )
                parts: list[Part] = [(0, 1, answered)]
            else:
                parts = await self._scorer.answer_parts(
                    group.target, group.features, ids[0], deadline, plan, fallback, tally
                )
        except ModelRuntimeError as e:
            for i in group.indices:
                results[i] = e
            return
        done_waiting = time.monotonic()
        if done_waiting > deadline.at:
            done_waiting = deadline.at
        recording = []
        for start, stop, part in parts:
            if isinstance(part, ModelRuntimeError):
                for i in group.indices[start:stop]:
                    results[i] = part
            else:
                recording.append(
                    self._record(
                        point, group, start, stop, part, ids, received_ns, config_version,
                        tally, results, caller, batch,
                    )
                )  # fmt: skip
        if len(recording) == 1:
            await recording[0]
        elif recording:
            await asyncio.gather(*recording)
        self._reserve.observe(time.monotonic() - done_waiting)

    async def _record(
        self,
        point: DecisionPoint,
        group: Group,
        start: int,
        stop: int,
        answered: Answered,
        ids: list[str],
        received_ns: int,
        config_version: str,
        tally: Tally,
        results: list[Recorded | None],
        caller: Caller,
        batch: bool,
    ) -> None:
        """Rows ``[start, stop)`` of a group, answered alike: their records, then their results."""
        arm, extra = group.arm, None
        reason = answered.fallback_reason
        if reason:
            arm = ARM_FALLBACK
            extra = {FALLBACK_FROM: answered.fallback_from, FALLBACK_ERROR: answered.fallback_error}
            self.metrics.fallbacks.labels(point.name, reason).inc(stop - start)
        decided = Decided(
            point.name, point.policy, arm, group.target.feature_schema_version, config_version,
            received_ns, tally.attempts, reason, extra, point.reasons, caller,
        )  # fmt: skip
        outcomes = [
            RowOutcome(row.request_id, row.entity_key, features, answer, decision_id)
            for row, features, answer, decision_id in zip(
                group.rows[start:stop],
                group.features[start:stop],
                answered.answers,
                ids[start:stop],
                strict=True,
            )
        ]
        recorded = await self._recorder.record(decided, outcomes, batch=batch)
        for i, outcome in zip(group.indices[start:stop], recorded, strict=True):
            results[i] = outcome

    def _count(self, point: str, results: list[Recorded], elapsed: float) -> None:
        if len(results) == 1:
            (result,) = results
            if isinstance(result, DecisionRecord):
                self.metrics.decided(
                    point, result.arm, result.model_version, result.decision, elapsed
                )
            else:
                self.metrics.requests.labels(point, "", "", result.code.name).inc()
            return
        # Counted per label set, not per row: a labels() lookup costs more than the increment.
        outcomes: Counter[tuple[str, str, str]] = Counter()
        for r in results:
            if isinstance(r, DecisionRecord):
                outcomes[(r.arm, r.model_version, r.decision)] += 1
            else:
                outcomes[("", "", r.code.name)] += 1
        for (arm, version, outcome), count in outcomes.items():
            if arm:
                self.metrics.decided(point, arm, version, outcome, elapsed, count)
            else:
                self.metrics.requests.labels(point, arm, version, outcome).inc(count)

    async def stop_admitting(self, grace_s: float) -> bool:
        """Refuses new requests from now on (UNAVAILABLE) and waits up to ``grace_s`` for those
        admitted to be answered; True if they all were."""
        self.admission.close()
        return await self.admission.idle(grace_s)

    async def close(self, grace_s: float = 1.0) -> None:
        """Lets shadow calls finish (bounded), before the client closes."""
        await self.shadows.drain(grace_s)
