"""Batch failure isolation in process, against FakeModelClient: when the runtime refuses a
micro-batch's inputs, each row is sent again alone within its own deadline and only the rows it
refuses fail; any other failure still reaches every row of the batch. The same against a real
gateway and runtime, with the refusal injected on the wire, is in test_batch_isolation.py.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from support.fake_model_client import FakeCall, FakeModelClient

from gateway.deadline import Deadline
from gateway.errors import (
    ModelRuntimeError,
    RuntimeDeadlineExceeded,
    RuntimeFailed,
    RuntimeRefusedInput,
    RuntimeUnavailable,
)
from gateway.routing.compiled import load_routes
from gateway.runtime_client.batching import BatchingModelClient, BatchingPolicy
from gateway.runtime_client.protocol import ModelAnswer
from gateway.runtime_client.targets import ModelTarget
from runtimes.manifest import Manifest

BAD = 666.0
"""The amount the fake runtime refuses."""


@pytest.fixture
def target(
    manifests: dict[tuple[str, str], Manifest],
    demo_config: Callable[[str], dict[str, Any]],
    tmp_path: Any,
) -> ModelTarget:
    import yaml

    path = tmp_path / "routes.yaml"
    path.write_text(yaml.safe_dump(demo_config("127.0.0.1:1")))
    return load_routes(path, manifests).decision_points["card-fraud"].primary


class Batch:
    """A client whose lane has one call outstanding and ``amounts`` queued behind it."""

    def __init__(self, target: ModelTarget) -> None:
        self.fake = FakeModelClient()
        self.resent: list[int] = []
        self.client = BatchingModelClient(
            self.fake, BatchingPolicy(max_wait_s=30.0), on_resend=self.resent.append
        )
        self.target = target

    def send(
        self, amounts: list[float], timeouts_s: list[float] | None = None
    ) -> list[asyncio.Task[ModelAnswer]]:
        timeouts = timeouts_s or [5.0] * len(amounts)
        return [
            asyncio.create_task(
                self.client.infer(self.target, {"amount": a}, Deadline.after(t), f"r{a}")
            )
            for a, t in zip(amounts, timeouts, strict=True)
        ]

    async def queued_behind_a_call(
        self, amounts: list[float], timeouts_s: list[float] | None = None
    ) -> tuple[list[asyncio.Task[ModelAnswer]], FakeCall]:
        """``amounts`` sent while a lone call is outstanding; returns them and their batch call
        (made once the lone call has returned)."""
        lone = self.send([1.0])
        first = await self.fake.next_call()
        queued = self.send(amounts, timeouts_s)
        await asyncio.sleep(0)
        first.answer()
        await lone[0]
        return queued, await self.fake.next_call()


def _refuse_bad(call: FakeCall) -> None:
    """The fake runtime's verdict on a call: refused if any row holds BAD."""
    if any(row["amount"] == BAD for row in call.rows):
        call.fail(RuntimeRefusedInput("model card-fraud-v1 failed: INVALID_ARGUMENT: amount"))
    else:
        call.answer()


async def test_only_the_refused_row_of_a_batch_fails_and_the_others_are_answered_alone(
    target: ModelTarget,
) -> None:
    b = Batch(target)
    amounts = [10.0, 20.0, BAD, 30.0, 40.0]
    queued, batch = await b.queued_behind_a_call(amounts)
    assert (len(batch.rows), batch.batch) == (5, True)
    _refuse_bad(batch)
    alone = [await b.fake.next_call() for _ in amounts]
    assert [(c.rows, c.batch) for c in alone] == [([{"amount": a}], False) for a in amounts]
    for call in alone:
        _refuse_bad(call)
    with pytest.raises(TimeoutError):
        await b.fake.next_call(timeout_s=0.02)  # the refused row alone is not sent again
    results = await asyncio.gather(*queued, return_exceptions=True)
    bad = results.pop(2)
    assert isinstance(bad, RuntimeRefusedInput) and "INVALID_ARGUMENT" in str(bad)
    assert all(isinstance(r, ModelAnswer) and r.batch_size == 1 for r in results), results
    assert b.client.batch_sizes == Counter({1: 1 + 5, 5: 1})
    assert (b.client.rows_resent, b.resent) == (5, [5])


async def test_each_row_sent_again_keeps_its_own_deadline_and_a_row_out_of_time_is_not_sent(
    target: ModelTarget,
) -> None:
    b = Batch(target)
    queued, batch = await b.queued_behind_a_call([10.0, 20.0, BAD], [0.1, 3.0, 5.0])
    await asyncio.sleep(0.15)  # the first row's deadline passes while its batch is out
    _refuse_bad(batch)
    alone = [await b.fake.next_call(), await b.fake.next_call()]
    assert [c.rows for c in alone] == [[{"amount": 20.0}], [{"amount": BAD}]]
    assert 2.5 < alone[0].deadline.remaining() < 3.0  # the row's own, not the batch's (5 s)
    for call in alone:
        _refuse_bad(call)
    results = await asyncio.gather(*queued, return_exceptions=True)
    assert [type(r) for r in results] == [
        RuntimeDeadlineExceeded,
        ModelAnswer,
        RuntimeRefusedInput,
    ]
    assert b.resent == [2]


@pytest.mark.parametrize(
    "error",
    [
        RuntimeUnavailable("runtime down (test)"),
        RuntimeDeadlineExceeded("too slow (test)"),
        RuntimeFailed("model card-fraud-v1 failed: INTERNAL: (test)"),
    ],
    ids=lambda e: type(e).__name__,
)
async def test_a_failure_not_caused_by_the_inputs_reaches_every_row_without_a_resend(
    target: ModelTarget, error: ModelRuntimeError
) -> None:
    b = Batch(target)
    queued, batch = await b.queued_behind_a_call([10.0, 20.0, 30.0])
    batch.fail(error)
    results = await asyncio.gather(*queued, return_exceptions=True)
    assert [type(r) for r in results] == [type(error)] * 3
    assert b.resent == [] and b.client.rows_resent == 0
    with pytest.raises(TimeoutError):
        await b.fake.next_call(timeout_s=0.02)  # nothing sent again


async def test_a_row_sent_again_that_meets_another_failure_gets_that_failure(
    target: ModelTarget,
) -> None:
    b = Batch(target)
    queued, batch = await b.queued_behind_a_call([10.0, BAD])
    _refuse_bad(batch)
    good, bad = await b.fake.next_call(), await b.fake.next_call()
    good.fail(RuntimeUnavailable("runtime went down (test)"))  # for the router to retry
    _refuse_bad(bad)
    results = await asyncio.gather(*queued, return_exceptions=True)
    assert [type(r) for r in results] == [RuntimeUnavailable, RuntimeRefusedInput]
