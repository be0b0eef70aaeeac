"""FakeModelClient: a stand-in for the model runtimes (named as such; the real runtime is tested
elsewhere), so the core's orchestration, fallback, deadline and batching logic run in process.

Every call the core makes is kept as a ``FakeCall`` and waits until the test answers or fails
it (or answers at once, with ``auto``): no sleeps, no ports. A call still waiting when its
deadline passes fails with RuntimeDeadlineExceeded, as a real runtime call would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence

from gateway.deadline import Deadline
from gateway.errors import ModelRuntimeError, RuntimeDeadlineExceeded
from gateway.runtime_client.protocol import ModelAnswer
from gateway.runtime_client.targets import ModelTarget
from lineage.v1.record import FeatureScalar

Scores = Callable[[ModelTarget, Mapping[str, FeatureScalar]], float]

FAKE_RUNTIME = "fake-runtime"


def constant(score: float) -> Scores:
    return lambda _target, _row: score


DEFAULT_SCORES = constant(0.1)


class FakeCall:
    """One runtime call as the core made it: what it asked, and a way to answer it."""

    def __init__(
        self,
        target: ModelTarget,
        rows: Sequence[Mapping[str, FeatureScalar]],
        deadline: Deadline,
        request_id: str,
        endpoint: str,
        batch: bool,
    ) -> None:
        self.target = target
        self.rows = list(rows)
        self.deadline = deadline
        self.request_id = request_id
        self.endpoint = endpoint
        self.batch = batch
        """True for ``infer_batch``, False for ``infer``."""
        self.future: asyncio.Future[list[ModelAnswer]] = asyncio.get_running_loop().create_future()

    def answer(self, scores: Scores | None = None) -> None:
        if scores is None:
            scores = DEFAULT_SCORES
        self.future.set_result(
            [
                ModelAnswer(
                    scores(self.target, row),
                    self.target.model,
                    self.target.version,
                    self.target.manifest.artifact_sha256,
                    FAKE_RUNTIME,
                    self.endpoint,
                    len(self.rows),
                )
                for row in self.rows
            ]
        )

    def fail(self, error: ModelRuntimeError) -> None:
        self.future.set_exception(error)


class FakeModelClient:
    """A ModelClient whose calls the test answers: ``await next_call()`` then ``answer()``."""

    def __init__(self, auto: Scores | None = None) -> None:
        self.calls: list[FakeCall] = []
        self._auto = auto
        self._taken = 0
        self._arrived = asyncio.Condition()
        self.closed = False

    async def _call(self, call: FakeCall) -> list[ModelAnswer]:
        self.calls.append(call)
        async with self._arrived:
            self._arrived.notify_all()
        if self._auto is not None:
            call.answer(self._auto)
        try:
            return await asyncio.wait_for(asyncio.shield(call.future), call.deadline.remaining())
        except TimeoutError:
            raise RuntimeDeadlineExceeded(
                f"model {call.target.served_name} at {call.endpoint} (fake) did not answer in time"
            ) from None

    async def infer(
        self,
        target: ModelTarget,
        features: Mapping[str, FeatureScalar],
        deadline: Deadline,
        request_id: str = "",
        endpoint: str | None = None,
    ) -> ModelAnswer:
        where = endpoint or target.endpoints[0]
        (answer,) = await self._call(
            FakeCall(target, [features], deadline, request_id, where, batch=False)
        )
        return answer

    async def infer_batch(
        self,
        target: ModelTarget,
        rows: Sequence[Mapping[str, FeatureScalar]],
        deadline: Deadline,
        request_id: str = "",
        endpoint: str | None = None,
    ) -> list[ModelAnswer]:
        where = endpoint or target.endpoints[0]
        return await self._call(FakeCall(target, rows, deadline, request_id, where, batch=True))

    async def next_call(self, timeout_s: float = 5.0) -> FakeCall:
        """The next call not yet handed to the test, once the core has made it."""
        async with self._arrived:
            await asyncio.wait_for(
                self._arrived.wait_for(lambda: len(self.calls) > self._taken), timeout_s
            )
        call = self.calls[self._taken]
        self._taken += 1
        return call

    def add_targets(self, targets: Iterable[ModelTarget]) -> None:
        return None

    async def close(self) -> None:
        self.closed = True
