"""The step loop: apply a weight, wait for a gateway to take it, judge the window, go on.

Each step's window starts when a gateway reported the step's weight in force (its reload's
route change in lineage), so the evidence holds only decisions made at that weight. During the
dwell the evidence is read every ``check_interval_s``; a crossing rolls back at once, so a bad
canary is never kept to the end of its dwell. A rollback sets the weight to 0 in one write:
sticky entities on the canary (the buckets below the old weight) are all back on the primary
from the gateway's next reload, and no other entity moves.

Every step is recorded in lineage as a route change (after the gateway's own, so it carries
the config version the gateway reported): who started the run, the plan, the weights before and
after, the evidence and the verdict with its reason. When the run stops without a verdict
(the store or the routes out of reach, no gateway taking a weight, an interrupt) it sets the
weight to 0 if it can, records that, and ends aborted.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.canary.appliers import RoutesStore
from gateway.canary.errors import (
    EXIT_PROMOTED,
    EXIT_ROLLED_BACK,
    CanaryError,
    NotApplied,
)
from gateway.canary.lineage import (
    LineageCanaryClient,
    canary_weight_in_force,
    same_weight,
    timestamp,
    us,
)
from gateway.canary.plan import CanaryPlan
from gateway.canary.verdict import Evidence, Verdict, judge
from gateway.canary.weights import canary_weight, served_names, with_canary_weight
from lineage.v1 import lineage_pb2

log = logging.getLogger(__name__)


def _now_us() -> int:
    return time.time_ns() // 1000


@dataclass(frozen=True, slots=True)
class Applied:
    weight: float
    written_us: int
    """When the routes were written."""
    in_force_us: int
    """When a gateway reported the weight in force (its reload's changed_at)."""
    config_version: str
    targets: tuple[lineage_pb2.ArmTarget, ...]


@dataclass(frozen=True, slots=True)
class RunOutcome:
    exit_code: int
    verdict: str
    """``promoted``, ``rolled_back`` or ``aborted``."""
    reason: str
    weight: float
    run_id: str


class CanaryController:
    def __init__(
        self,
        plan: CanaryPlan,
        routes: RoutesStore,
        lineage: LineageCanaryClient,
        started_by: str,
        apply_timeout_s: float = 120.0,
        poll_interval_s: float = 0.2,
        now_us: Callable[[], int] = _now_us,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._plan = plan
        self._routes = routes
        self._lineage = lineage
        self._started_by = started_by
        self._apply_timeout_s = apply_timeout_s
        self._poll_s = poll_interval_s
        self._now = now_us
        self._sleep = sleep
        self.run_id = uuid.uuid4().hex[:12]
        self._source = f"canary-controller/{self.run_id}"
        self._weight = 0.0
        self._served: list[str] = []

    async def run(self) -> RunOutcome:
        try:
            return await self._run()
        except (CanaryError, asyncio.CancelledError) as e:
            reason = str(e) if isinstance(e, CanaryError) else "interrupted"
            await self._abort(reason)
            if isinstance(e, asyncio.CancelledError):
                raise
            raise

    async def _run(self) -> RunOutcome:
        plan = self._plan
        text = await self._routes.read()
        self._weight = canary_weight(text, plan.decision_point)
        self._served = served_names(text, plan.candidate)
        log.info(
            "canary run %s: %s to %s v%s in steps %s, started by %s",
            self.run_id, plan.decision_point, plan.candidate.model, plan.candidate.version,
            plan.steps, self._started_by,
        )  # fmt: skip
        applied = await self._apply(plan.steps[0])
        await self._record(applied, 0, "start", f"run started by {self._started_by}", None)
        for index, weight in enumerate(plan.steps[:-1]):
            verdict, evidence, seen_us = await self._dwell(applied.in_force_us, index)
            if verdict.kind == "rollback":
                before = self._weight
                applied = await self._apply(0.0)
                await self._record(applied, index, "rollback", verdict.reason, evidence,
                                   before=before, seen_us=seen_us)  # fmt: skip
                return RunOutcome(EXIT_ROLLED_BACK, "rolled_back", verdict.reason, 0.0, self.run_id)
            applied = await self._apply(plan.steps[index + 1])
            await self._record(applied, index, "promote", verdict.reason, evidence, before=weight)
        reason = f"promoted to {plan.steps[-1]:g} %"
        return RunOutcome(EXIT_PROMOTED, "promoted", reason, self._weight, self.run_id)

    async def _dwell(self, start_us: int, step: int) -> tuple[Verdict, Evidence, int]:
        """Reads the evidence over [start, now) until a verdict; records each hold."""
        plan = self._plan
        deadline_us = start_us + int(plan.dwell_s * 1e6)
        holds = 0
        while True:
            left_s = max(0.0, (deadline_us - self._now()) / 1e6)
            await self._sleep(min(plan.check_interval_s, left_s))
            now = self._now()
            evidence = await self._lineage.compare(plan.decision_point, start_us, now, self._served)
            verdict = judge(plan, evidence, now >= deadline_us, holds)
            if verdict is None:
                continue
            if verdict.kind != "hold":
                return verdict, evidence, now
            holds += 1
            deadline_us += int(plan.dwell_s * 1e6)
            log.info("canary run %s: hold at %g %%: %s", self.run_id, self._weight, verdict.reason)
            current = await self._current()
            await self._record(current, step, "hold", verdict.reason, evidence, before=self._weight)

    async def _current(self) -> Applied:
        now = self._now()
        change = await self._lineage.in_force(self._plan.decision_point, now)
        if change is None:
            raise NotApplied(f"no route change of {self._plan.decision_point} in lineage")
        return Applied(self._weight, now, now, change.config_version, tuple(change.targets))

    async def _apply(self, weight: float) -> Applied:
        """Writes ``weight`` and waits until a gateway reports it in force."""
        plan = self._plan
        written = self._now()
        await self._routes.update(
            lambda text: with_canary_weight(text, plan.decision_point, plan.candidate, weight)
        )
        self._weight = weight
        give_up = written + int(self._apply_timeout_s * 1e6)
        while True:
            change = await self._lineage.in_force(plan.decision_point, self._now())
            if (
                change is not None
                and not change.analysis_json
                and same_weight(canary_weight_in_force(change, plan.decision_point), weight)
                and _serves_candidate(change, plan)
            ):
                # A weight already in force before the write counts from the write.
                in_force = max(us(change.changed_at), written)
                log.info(
                    "canary run %s: %s at %g %% in force after %.2f s (config %s)",
                    self.run_id, plan.decision_point, weight,
                    (us(change.changed_at) - written) / 1e6, change.config_version,
                )  # fmt: skip
                return Applied(
                    weight, written, in_force, change.config_version, tuple(change.targets)
                )
            if self._now() >= give_up:
                raise NotApplied(
                    f"no gateway reported {plan.decision_point} at canary weight {weight:g} % "
                    f"within {self._apply_timeout_s:g} s of writing {self._routes.location} "
                    "(a gateway refusing the routes logs why)"
                )
            await self._sleep(self._poll_s)

    async def _record(
        self,
        applied: Applied,
        step: int,
        verdict: str,
        reason: str,
        evidence: Evidence | None,
        before: float = 0.0,
        seen_us: int = 0,
    ) -> None:
        plan = self._plan
        analysis: dict[str, Any] = {
            "run_id": self.run_id,
            "started_by": self._started_by,
            "routes": self._routes.location,
            "plan": plan.model_dump(mode="json"),
            "step": step,
            "weight_before": before,
            "weight_after": applied.weight,
            "verdict": verdict,
            "reason": reason,
            "evidence": evidence.to_json() if evidence is not None else None,
            "written_at_us": applied.written_us,
            "in_force_at_us": applied.in_force_us,
        }
        if seen_us:
            # From the check that saw the crossing to a gateway serving weight 0.
            analysis["crossing_seen_at_us"] = seen_us
            analysis["rollback_s"] = round((applied.in_force_us - seen_us) / 1e6, 3)
        diff = {plan.decision_point: {"canary": {"weight": [before, applied.weight]}}}
        change = lineage_pb2.RouteChange(
            changed_at=timestamp(applied.written_us),
            config_version=applied.config_version,
            diff_json=orjson.dumps(diff).decode(),
            targets=list(applied.targets),
            source=self._source,
            initiated_by=self._started_by,
            analysis_json=orjson.dumps(analysis).decode(),
        )
        await self._lineage.record(change)
        log.info(
            "canary run %s: %s at step %d (%g %% -> %g %%): %s",
            self.run_id, verdict, step, before, applied.weight, reason,
        )  # fmt: skip

    async def _abort(self, reason: str) -> None:
        log.error("canary run %s aborted: %s", self.run_id, reason)
        before = self._weight
        try:
            applied = await asyncio.shield(self._apply_zero_quickly())
            await asyncio.shield(self._record(applied, 0, "abort", reason, None, before=before))
        except (CanaryError, asyncio.CancelledError) as e:
            log.error("canary run %s: could not set the weight to 0 on abort: %s", self.run_id, e)

    async def _apply_zero_quickly(self) -> Applied:
        plan = self._plan
        written = self._now()
        await self._routes.update(
            lambda text: with_canary_weight(text, plan.decision_point, plan.candidate, 0.0)
        )
        self._weight = 0.0
        change = await self._lineage.in_force(plan.decision_point, self._now())
        version = change.config_version if change is not None else ""
        targets = tuple(change.targets) if change is not None else ()
        return Applied(0.0, written, written, version or "unconfirmed", targets)


def _serves_candidate(change: lineage_pb2.RouteChange, plan: CanaryPlan) -> bool:
    return any(
        t.decision_point == plan.decision_point
        and t.arm == "canary"
        and t.model_name == plan.candidate.model
        and t.model_version == plan.candidate.version
        for t in change.targets
    )
