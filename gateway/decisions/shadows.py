"""Shadow (mirror) traffic: fire-and-forget calls with their own bound, never the caller's wait.

For each shadow of the decision point whose split takes the entity, a mirror call of the same
validated features is started as its own task; the caller's answer never awaits it. Its
decision is recorded (arm ``shadow``, linked to the caller's decision by ``parent_decision_id``).
At most ``max_in_flight`` shadow calls run at once per process; beyond that a shadow is dropped
and counted, so a hanging shadow target can cost memory and sockets only up to the bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine
from typing import Any

from gateway.attempts.answers import Answer
from gateway.attempts.caller import CallPlan, ModelCaller, Tally
from gateway.caller import OPEN_ACCESS, Caller
from gateway.deadline import Deadline
from gateway.decisions.ids import UuidV7Generator
from gateway.errors import ModelRuntimeError
from gateway.metrics import GatewayMetrics
from gateway.recording.recorder import Recorder
from gateway.recording.records import Decided, RowOutcome
from gateway.routing import splits as split
from gateway.routing.compiled import DecisionPoint
from gateway.runtime_client.targets import ModelTarget
from lineage.v1.record import PARENT_DECISION_ID, FeatureScalar

log = logging.getLogger(__name__)

ARM_SHADOW = "shadow"


class ShadowTraffic:
    def __init__(
        self,
        caller: ModelCaller,
        recorder: Recorder,
        ids: UuidV7Generator,
        metrics: GatewayMetrics,
        max_in_flight: int,
    ) -> None:
        self.max_in_flight = max_in_flight
        self._caller = caller
        self._recorder = recorder
        self._ids = ids
        self._metrics = metrics
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def start(
        self,
        point: DecisionPoint,
        request_id: str,
        entity_key: str,
        features: dict[str, FeatureScalar],
        parent_id: str,
        received_ns: int,
        config_version: str,
        caller: Caller = OPEN_ACCESS,
    ) -> None:
        """Starts the mirrors of one decision that the shadow splits take."""
        for shadow in point.shadows:
            if not split.on_split(f"{point.name}/shadow", entity_key, shadow.buckets):
                continue
            work = self._shadow(
                point, shadow.target, request_id, entity_key, features, parent_id, received_ns,
                config_version, caller,
            )  # fmt: skip
            if not self.submit(work):
                self._metrics.shadows.labels(point.name, shadow.target.version, "dropped").inc()

    def submit(self, work: Coroutine[Any, Any, None]) -> bool:
        """Starts ``work`` unless the bound is reached (then it is closed unstarted: False)."""
        if len(self._tasks) >= self.max_in_flight:
            work.close()
            return False
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return True

    async def _shadow(
        self,
        point: DecisionPoint,
        target: ModelTarget,
        request_id: str,
        entity_key: str,
        features: dict[str, FeatureScalar],
        parent_id: str,
        received_ns: int,
        config_version: str,
        caller: Caller,
    ) -> None:
        """Scores a mirror and records it; never raises into anything a caller waits for."""
        decision_id = self._ids.new(time.time_ns())
        tally = Tally()
        deadline = Deadline.after(point.timeout_s)
        try:
            answer = await self._caller.call(
                target, features, decision_id, deadline, CallPlan(point.name), tally
            )
        except ModelRuntimeError as e:
            self._metrics.shadows.labels(point.name, target.version, "failed").inc()
            log.debug("shadow %s for %s failed: %s", target.served_name, parent_id, e)
            return
        self._metrics.shadows.labels(point.name, target.version, "scored").inc()
        decided = Decided(
            point.name, point.policy, ARM_SHADOW, target.feature_schema_version, config_version,
            received_ns, tally.attempts, extra={PARENT_DECISION_ID: parent_id},
            reasons=point.reasons, caller=caller,
        )  # fmt: skip
        row = RowOutcome(request_id, entity_key, features, Answer.of_model(answer), decision_id)
        await self._recorder.record(decided, [row], batch=False)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("shadow call failed unexpectedly", exc_info=task.exception())

    async def drain(self, timeout_s: float) -> None:
        """Lets running shadows finish for up to ``timeout_s``, then cancels the rest."""
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=timeout_s)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError):
                await task
