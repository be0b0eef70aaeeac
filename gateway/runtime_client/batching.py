"""Adaptive micro-batching: concurrent single-row calls to one model version share one OIP call.

A Python runtime's cost is mostly per call (gRPC and framework), hardly per row, so the gateway
makes it do less per decision by coalescing. Per lane (model version, endpoint)::

    infer() ──▶ lane idle? ── yes ──▶ call now, alone (batch of 1: a lone request never waits)
                   │ no (a call is outstanding)
                   ▼
                 queue ──▶ flushed as ONE ModelInfer with [N, 1] inputs when
                           - the outstanding call returns (natural batching, no timer needed),
                           - the queue reaches ``max_size`` rows, or
                           - its oldest row has waited the lane's patience: ``max_wait_s``, or
                             twice the lane's mean call time when that is longer

While the gateway itself is saturated (its event loop busy at least ``hold_busy`` of the time,
``gateway.loop_load``), the rows queued behind a returning call are not sent at once: they wait
up to ``max_wait_s`` more (or the rest of their patience, if shorter), gathering the rows that
arrive meanwhile, so that the runtime gets fewer and larger calls and both processes spend less
CPU per decision; at lower concurrency the loop is less busy and the hold never starts
(docs/performance-log.md has the measurements).

The patience is what keeps a slow runtime from being sent more work. Sending the queue early
only pays when the call ahead is a straggler (one slow call, one slow replica); when every call
is slow because the runtime is saturated, an early second call queues behind the first in the
runtime, and splitting the rows into more calls makes each decision dearer, which slows the
runtime further (docs/performance-log.md).

A batch call gets the latest of its rows' deadlines as its gRPC deadline, and every row keeps
its own: a row whose deadline passes leaves with ``RuntimeDeadlineExceeded`` at that moment
while the others wait on, so no row delays another beyond its budget.

A row that fails in the runtime fails alone. When the runtime refuses a batch's inputs
(``RuntimeRefusedInput``: INVALID_ARGUMENT or OUT_OF_RANGE, which one row may cause), every
row still waiting is sent again alone, all at once, each with its own deadline; each row then
gets its own answer or error, so only the refused rows fail. Sending rows alone rather than
bisecting the batch costs more calls when the batch is large (N rather than about 2 log2 N for
one refused row), but never more than N, even when the runtime refuses every row, and each row
is then scored as a replay scores it. Any other failure (unavailable, deadline, another runtime
status, an unusable answer) is not a row's doing: it is given to every row still waiting, each
its own copy. Either way the retries, hedges, fallbacks and circuit breakers above this client
see one outcome per request, exactly as without batching: a refused row counts once, not once
per row batched with it.

``infer_batch`` (ScoreBatch) is passed through: it is one caller's call already, and the rows
of a ScoreBatch group share that call's outcome (docs/api.md).
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from gateway.deadline import Clock, Deadline
from gateway.errors import (
    ModelRuntimeError,
    RuntimeDeadlineExceeded,
    RuntimeRefusedInput,
    RuntimeUnavailable,
)
from gateway.runtime_client.protocol import ModelAnswer, ModelClient
from gateway.runtime_client.targets import ModelTarget
from lineage.v1.record import FeatureScalar

DEFAULT_MAX_SIZE = 64
# The least patience, for a lane whose calls are fast: longer than an unloaded runtime call,
# since a shorter bound splits the rows queued behind an outstanding call into a second,
# concurrent call, which the runtime (one Python process) then serves after the first anyway
# (docs/performance-log.md). A lone call never waits whatever this is.
DEFAULT_MAX_WAIT_S = 0.002
DEFAULT_MAX_CALLS = 1
# How much the latest runtime call moves a lane's mean call time (an exponential moving mean).
CALL_TIME_WEIGHT = 0.2
# A queued batch waits for the call ahead up to this many times the lane's mean call time.
PATIENCE_FACTOR = 2.0
# The hold ends this far below the busy share that started it, so it does not flap.
HOLD_HYSTERESIS = 0.1


@dataclass(frozen=True, slots=True)
class BatchingPolicy:
    """How much to coalesce: rows per call, the longest a queued row waits, calls per lane, and
    how busy the gateway must be before queued rows wait for more (see ``BatchingModelClient``)."""

    max_size: int = DEFAULT_MAX_SIZE
    max_wait_s: float = DEFAULT_MAX_WAIT_S
    max_calls: int = DEFAULT_MAX_CALLS
    # Hold queued rows (up to max_wait_s) while the event loop is at least this busy (0: never).
    hold_busy: float = 0.0


class HoldSwitch:
    """On once the loop's busy share reaches ``threshold``, off again only below
    ``threshold - HOLD_HYSTERESIS``."""

    __slots__ = ("on", "threshold")

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.on = False

    def update(self, busy: float) -> bool:
        self.on = busy >= (self.threshold - HOLD_HYSTERESIS if self.on else self.threshold)
        return self.on


class _Waiter:
    __slots__ = ("deadline", "features", "future", "request_id", "timer")

    def __init__(
        self,
        features: Mapping[str, FeatureScalar],
        request_id: str,
        deadline: Deadline,
        future: asyncio.Future[ModelAnswer],
    ) -> None:
        self.features = features
        self.request_id = request_id
        self.deadline = deadline
        self.future = future
        self.timer: asyncio.TimerHandle | None = None


class _Lane:
    """One model version at one endpoint: its calls in flight, the rows waiting for one, and
    how long its calls have been taking."""

    __slots__ = ("call_s", "calls", "endpoint", "queue", "target", "timer")

    def __init__(self, target: ModelTarget, endpoint: str) -> None:
        self.target = target
        self.endpoint = endpoint
        self.calls = 0
        self.queue: list[_Waiter] = []
        self.timer: asyncio.TimerHandle | None = None
        self.call_s = 0.0

    def answered(self, seconds: float) -> None:
        """Folds an answered call's duration into the lane's mean call time."""
        if self.call_s:
            self.call_s += CALL_TIME_WEIGHT * (seconds - self.call_s)
        else:
            self.call_s = seconds

    def patience(self, max_wait_s: float) -> float:
        """How long a queued batch waits for the call ahead before going on its own."""
        return max(max_wait_s, PATIENCE_FACTOR * self.call_s)


def _fail(waiters: Iterable[_Waiter], error: ModelRuntimeError) -> None:
    """Gives ``error`` to every row of ``waiters`` still waiting, a copy each: a waiter's
    handler may rewrite its error's message."""
    for w in waiters:
        if not w.future.done():
            w.future.set_exception(copy.copy(error))


def _expire(waiter: _Waiter, where: str, budget_s: float) -> None:
    if not waiter.future.done():
        waiter.future.set_exception(
            RuntimeDeadlineExceeded(f"{where} did not answer within {budget_s * 1000:.0f} ms")
        )


class BatchingModelClient:
    """A ModelClient that coalesces concurrent ``infer`` calls; see the module docstring.

    ``batch_sizes`` counts runtime calls by the rows they carried (1: a row that went alone);
    ``rows_resent`` the rows of refused batches sent again alone.
    """

    def __init__(
        self,
        inner: ModelClient,
        policy: BatchingPolicy | None = None,
        on_call: Callable[[int], None] | None = None,
        load: Callable[[], float] | None = None,
        clock: Clock = time.monotonic,
        on_resend: Callable[[int], None] | None = None,
    ) -> None:
        self._inner = inner
        # Times the lanes' calls; the rows' own deadlines are kept by the event loop's timers.
        self._clock = clock
        self.policy = policy or BatchingPolicy()
        # The event loop's busy share (``gateway.loop_load``), for the hold.
        self._load = load
        self._hold_switch = HoldSwitch(self.policy.hold_busy)
        # Told the rows of every runtime call this client makes (a metric's observe).
        self._on_call = on_call
        self._lanes: dict[tuple[str, str, str], _Lane] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.batch_sizes: Counter[int] = Counter()
        # Told how many rows of a refused batch are sent again alone (a counter's inc).
        self._on_resend = on_resend
        self.rows_resent = 0

    def add_targets(self, targets: Iterable[ModelTarget]) -> None:
        self._inner.add_targets(targets)

    async def infer_batch(
        self,
        target: ModelTarget,
        rows: Sequence[Mapping[str, FeatureScalar]],
        deadline: Deadline,
        request_id: str = "",
        endpoint: str | None = None,
    ) -> list[ModelAnswer]:
        return await self._inner.infer_batch(target, rows, deadline, request_id, endpoint)

    async def infer(
        self,
        target: ModelTarget,
        features: Mapping[str, FeatureScalar],
        deadline: Deadline,
        request_id: str = "",
        endpoint: str | None = None,
    ) -> ModelAnswer:
        if endpoint is None:
            endpoint = target.endpoints[0]
        key = (target.model, target.version, endpoint)
        lane = self._lanes.get(key)
        if lane is None or lane.target is not target:
            # A reloaded config brings new ModelTarget objects; rows queued for the old lane
            # are flushed by its own calls.
            lane = self._lanes[key] = _Lane(target, endpoint)
        if lane.calls < self.policy.max_calls and not lane.queue:
            lane.calls += 1
            self.batch_sizes[1] += 1
            if self._on_call is not None:
                self._on_call(1)
            started = self._clock()
            try:
                answer = await self._inner.infer(target, features, deadline, request_id, endpoint)
                lane.answered(self._clock() - started)
                return answer
            finally:
                lane.calls -= 1
                if lane.queue:
                    self._call_returned(lane)
        return await self._enqueue(lane, features, request_id, deadline)

    async def _enqueue(
        self,
        lane: _Lane,
        features: Mapping[str, FeatureScalar],
        request_id: str,
        deadline: Deadline,
    ) -> ModelAnswer:
        loop = asyncio.get_running_loop()
        waiter = _Waiter(features, request_id, deadline, loop.create_future())
        where = f"model {lane.target.served_name} at {lane.endpoint}"
        budget_s = deadline.remaining()
        waiter.timer = loop.call_later(budget_s, _expire, waiter, where, budget_s)
        lane.queue.append(waiter)
        policy = self.policy
        if len(lane.queue) >= policy.max_size:
            self._flush(lane)
        elif lane.timer is None:
            lane.timer = loop.call_later(lane.patience(policy.max_wait_s), self._flush, lane)
        try:
            return await waiter.future
        finally:
            waiter.timer.cancel()

    def _flush(self, lane: _Lane) -> None:
        """Sends every queued row still waiting as one call."""
        if lane.timer is not None:
            lane.timer.cancel()
            lane.timer = None
        waiters = [w for w in lane.queue if not w.future.done()]
        lane.queue = []
        if not waiters:
            return
        lane.calls += 1
        task = asyncio.get_running_loop().create_task(self._call(lane, waiters))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _call(self, lane: _Lane, waiters: list[_Waiter]) -> None:
        try:
            await self._send(lane, waiters)
        finally:
            lane.calls -= 1
            if lane.queue and lane.calls < self.policy.max_calls:
                self._call_returned(lane)

    async def _send(self, lane: _Lane, waiters: list[_Waiter]) -> None:
        """One runtime call for ``waiters``' rows; if the runtime refuses the rows of a batch,
        each is sent again alone, so that only the refused ones fail."""
        target, endpoint = lane.target, lane.endpoint
        size = len(waiters)
        self.batch_sizes[size] += 1
        if self._on_call is not None:
            self._on_call(size)
        started = self._clock()
        try:
            # The latest of the rows' deadlines; each row still leaves at its own.
            deadline = Deadline.latest([w.deadline for w in waiters])
            if size == 1:
                w = waiters[0]
                answers = [
                    await self._inner.infer(target, w.features, deadline, w.request_id, endpoint)
                ]
            else:
                rows = [w.features for w in waiters]
                batch_id = waiters[0].request_id
                answers = await self._inner.infer_batch(target, rows, deadline, batch_id, endpoint)
        except RuntimeRefusedInput as e:
            if size == 1:
                _fail(waiters, e)
            else:
                await self._isolate(lane, waiters)
        except ModelRuntimeError as e:
            _fail(waiters, e)
        except BaseException as e:
            _fail(
                waiters,
                RuntimeUnavailable(
                    f"model {target.served_name} at {endpoint}: batch call abandoned "
                    f"({type(e).__name__})"
                ),
            )
            raise
        else:
            lane.answered(self._clock() - started)
            for w, answer in zip(waiters, answers, strict=True):
                if not w.future.done():
                    w.future.set_result(answer)

    async def _isolate(self, lane: _Lane, waiters: list[_Waiter]) -> None:
        """Sends each row of a refused batch alone, all at once, each within its own deadline
        (a row whose deadline has passed already left)."""
        alone = [[w] for w in waiters if not w.future.done()]
        self.rows_resent += len(alone)
        if self._on_resend is not None:
            self._on_resend(len(alone))
        await asyncio.gather(*(self._send(lane, w) for w in alone))

    @property
    def holding(self) -> bool:
        """Whether queued rows are held while the gateway is saturated (as of the last return)."""
        return self._hold_switch.on

    def _call_returned(self, lane: _Lane) -> None:
        """A call of ``lane`` has returned with rows queued: they leave now or, while the
        gateway is saturated, after at most ``max_wait_s`` more (sooner if their patience ends
        first), so a slow lane's long patience never becomes the hold's."""
        if not self._hold():
            self._flush(lane)
            return
        loop = asyncio.get_running_loop()
        until = loop.time() + self.policy.max_wait_s
        if lane.timer is None or lane.timer.when() > until:
            if lane.timer is not None:
                lane.timer.cancel()
            lane.timer = loop.call_at(until, self._flush, lane)

    def _hold(self) -> bool:
        """Whether rows queued behind a returning call wait for more: while the gateway's loop
        is saturated (``HoldSwitch``)."""
        if not self.policy.hold_busy or self._load is None:
            return False
        return self._hold_switch.update(self._load())

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._inner.close()
