"""Calling one model version inside a deadline: endpoint choice, breakers, retries, hedges.

Every attempt gets what is left of the request's one deadline as its gRPC deadline, and is
ended by a timer of its own at that moment (the event loop's clock is the monotonic one the
deadline is on), since gRPC reports an expired deadline a few ms late. A retry is
made only after UNAVAILABLE (a timeout has spent the budget; a bad answer would be bad again),
at most ``num_retries`` times, to another endpoint when there is one, after a short jittered
back-off that must fit in the time left, and only while the decision point's retry budget has a
token. A hedge starts a second attempt when the first is slower than the delay (or the observed
p95); the first answer wins and the other call is cancelled. Endpoints whose circuit is open are
skipped; when every one is open the call fails at once with ``CircuitOpen``.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from gateway.attempts.breaker import Breakers
from gateway.attempts.budgets import LatencyWindow, RetryBudget
from gateway.attempts.policies import HedgePolicy, RetryPolicy
from gateway.deadline import Clock, Deadline
from gateway.errors import (
    CircuitOpen,
    ModelRuntimeError,
    RuntimeDeadlineExceeded,
    RuntimeRefusedInput,
    RuntimeUnavailable,
)
from gateway.metrics import GatewayMetrics
from gateway.runtime_client.protocol import ModelAnswer, ModelClient
from gateway.runtime_client.targets import ModelTarget
from lineage.v1.record import FeatureScalar


@dataclass(slots=True)
class Tally:
    """Runtime calls made for one decision, across retries, hedges and fallbacks."""

    attempts: int = 0


@dataclass(frozen=True, slots=True)
class CallPlan:
    """How hard to try: the decision point's policies, or none of them for a shadow."""

    point: str
    retry: RetryPolicy | None = None
    budget: RetryBudget | None = None
    hedge: HedgePolicy | None = None


T = TypeVar("T")
Invoke = Callable[[str, Deadline], Awaitable[T]]
"""One runtime call: (endpoint, deadline) -> result."""


def _consume(task: asyncio.Task[Any]) -> None:
    # A hedge's loser may fail after the winner answered; its error is expected, not news.
    if not task.cancelled():
        task.exception()


class ModelCaller:
    def __init__(
        self,
        client: ModelClient,
        breakers: Breakers,
        metrics: GatewayMetrics,
        clock: Clock = time.monotonic,
    ) -> None:
        self._client = client
        self._breakers = breakers
        self._metrics = metrics
        self._clock = clock
        self._turn = itertools.count()
        self._latency: dict[tuple[str, str], LatencyWindow] = {}

    def latency(self, target: ModelTarget) -> LatencyWindow:
        key = (target.model, target.version)
        window = self._latency.get(key)
        if window is None:
            window = self._latency[key] = LatencyWindow()
        return window

    def _pick(self, target: ModelTarget, tried: list[str]) -> str | None:
        """The next endpoint in turn whose circuit lets a call through, untried ones first."""
        endpoints = target.endpoints
        # Only first picks take a turn: a retry must not push the next request onto the
        # endpoint that just failed.
        start = next(self._turn) if not tried else 0
        now = self._clock()
        count = len(endpoints)
        for i in range(count):
            endpoint = endpoints[(start + i) % count]
            if endpoint not in tried and self._breakers.get(endpoint).allow(now):
                return endpoint
        for endpoint in tried:
            if self._breakers.get(endpoint).allow(now):
                return endpoint
        return None

    async def _attempt(
        self, target: ModelTarget, endpoint: str, invoke: Invoke[T], deadline: Deadline, track: bool
    ) -> T:
        breaker = self._breakers.get(endpoint)
        started = self._clock()
        budget_s = deadline.remaining()
        if budget_s <= 0:
            breaker.release()
            raise RuntimeDeadlineExceeded(
                f"model {target.served_name} at {endpoint}: no time left in the budget"
            )
        try:
            # Our own timer at the deadline: gRPC's DEADLINE_EXCEEDED arrives a few ms late.
            async with asyncio.timeout_at(deadline.at):
                answer = await invoke(endpoint, deadline)
        except RuntimeRefusedInput:
            # The runtime answered, and refused the rows: the caller's inputs are at fault, not
            # the endpoint, so its circuit must not open for other callers.
            breaker.success(self._clock())
            raise
        except ModelRuntimeError:
            breaker.failure(self._clock())
            raise
        except TimeoutError:
            breaker.failure(self._clock())
            raise RuntimeDeadlineExceeded(
                f"model {target.served_name} at {endpoint} did not answer within "
                f"{budget_s * 1000:.0f} ms"
            ) from None
        except BaseException:
            breaker.release()
            raise
        now = self._clock()
        breaker.success(now)
        if track:
            self.latency(target).add(now - started)
        return answer

    async def _hedged(
        self,
        target: ModelTarget,
        endpoint: str,
        invoke: Invoke[T],
        deadline: Deadline,
        plan: CallPlan,
        hedge: HedgePolicy,
        tally: Tally,
        track: bool,
    ) -> T:
        delay = hedge.delay_s
        if hedge.use_p95:
            p95 = self.latency(target).p95()
            if p95 is not None:
                delay = max(delay, p95)
        tasks = [asyncio.create_task(self._attempt(target, endpoint, invoke, deadline, track))]
        tasks[0].add_done_callback(_consume)
        try:
            done, _ = await asyncio.wait(tasks, timeout=max(0.0, min(delay, deadline.remaining())))
            if done:
                return tasks[0].result()
            if plan.budget is None or not plan.budget.withdraw():
                self._metrics.retries_denied.labels(plan.point).inc()
                return await tasks[0]
            second = self._pick(target, [endpoint])
            if second is None:
                return await tasks[0]
            tally.attempts += 1
            self._metrics.hedges.labels(plan.point).inc()
            tasks.append(
                asyncio.create_task(self._attempt(target, second, invoke, deadline, track))
            )
            tasks[1].add_done_callback(_consume)
            pending: set[asyncio.Task[T]] = set(tasks)
            error: BaseException | None = None
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    failure = task.exception()
                    if failure is None:
                        return task.result()
                    error = error or failure
            assert error is not None
            raise error
        finally:
            for task in tasks:
                if not task.done():
                    task.cancel()

    async def call(
        self,
        target: ModelTarget,
        features: Mapping[str, FeatureScalar],
        request_id: str,
        deadline: Deadline,
        plan: CallPlan,
        tally: Tally,
    ) -> ModelAnswer:
        """The first usable answer before ``deadline``; ModelRuntimeError otherwise."""

        async def invoke(endpoint: str, deadline: Deadline) -> ModelAnswer:
            return await self._client.infer(target, features, deadline, request_id, endpoint)

        return await self.call_with(target, invoke, deadline, plan, tally)

    async def call_batch(
        self,
        target: ModelTarget,
        rows: Sequence[Mapping[str, FeatureScalar]],
        request_id: str,
        deadline: Deadline,
        plan: CallPlan,
        tally: Tally,
    ) -> list[ModelAnswer]:
        """One answer per row from one runtime call (per attempt); as ``call`` otherwise."""

        async def invoke(endpoint: str, deadline: Deadline) -> list[ModelAnswer]:
            return await self._client.infer_batch(target, rows, deadline, request_id, endpoint)

        return await self.call_with(target, invoke, deadline, plan, tally, track=False)

    async def call_with(
        self,
        target: ModelTarget,
        invoke: Invoke[T],
        deadline: Deadline,
        plan: CallPlan,
        tally: Tally,
        track: bool = True,
    ) -> T:
        """Runs ``invoke(endpoint, deadline)`` under the plan: breakers, retries, hedges."""
        tried: list[str] = []
        retry = plan.retry
        retries_left = retry.num_retries if retry is not None else 0
        endpoint = self._pick(target, tried)
        if endpoint is None:
            raise CircuitOpen(
                f"model {target.served_name}: the circuit of every endpoint "
                f"({', '.join(target.endpoints)}) is open"
            )
        while True:
            tally.attempts += 1
            try:
                if plan.hedge is not None:
                    return await self._hedged(
                        target, endpoint, invoke, deadline, plan, plan.hedge, tally, track
                    )
                return await self._attempt(target, endpoint, invoke, deadline, track)
            except RuntimeUnavailable as e:
                error = e
            tried.append(endpoint)
            if retries_left <= 0 or retry is None:
                raise error
            backoff = retry.backoff_s * (0.5 + random.random() / 2)
            if deadline.remaining() <= backoff:
                raise error
            if plan.budget is not None and not plan.budget.withdraw():
                self._metrics.retries_denied.labels(plan.point).inc()
                raise error
            if backoff > 0:
                await asyncio.sleep(backoff)
            next_endpoint = self._pick(target, tried)
            if next_endpoint is None:  # every circuit open now: report the real failure
                raise error
            endpoint = next_endpoint
            retries_left -= 1
            self._metrics.retries.labels(plan.point).inc()
