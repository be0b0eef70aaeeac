"""Micro-batching's logic in process, against FakeModelClient (a stand-in for the runtime): which
rows go in which call, when a queue is sent, whose error reaches whom, and how long a row may
wait. The fake's calls return only when the test says so, so "a call is outstanding" is a fact,
not a timing; a clock injected into the client sets how long the lane's calls seem to take.
The same client against the real runtime (scores bit for bit, ScoreBatch's group commit) is in
test_batching.py.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from support.fake_model_client import FakeModelClient

from gateway.deadline import Deadline
from gateway.errors import RuntimeDeadlineExceeded, RuntimeUnavailable
from gateway.routing.compiled import load_routes
from gateway.runtime_client.batching import BatchingModelClient, BatchingPolicy, HoldSwitch
from gateway.runtime_client.protocol import ModelAnswer
from gateway.runtime_client.targets import ModelTarget
from lineage.v1.record import FeatureScalar
from runtimes.manifest import Manifest

LONG = 30.0
"""A max wait no test reaches: a queue leaves only behind a returning call or at max_size."""


class Clock:
    """What the client reads as the time its calls took; the rows' deadlines stay real."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


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


def _rows(count: int) -> list[dict[str, FeatureScalar]]:
    return [{"amount": float(i)} for i in range(count)]


def _client(
    fake: FakeModelClient,
    clock: Clock | None = None,
    load: Callable[[], float] | None = None,
    **policy: Any,
) -> BatchingModelClient:
    policy = {"max_wait_s": LONG, **policy}
    return BatchingModelClient(fake, BatchingPolicy(**policy), clock=clock or Clock(), load=load)


def _send(
    client: BatchingModelClient,
    target: ModelTarget,
    rows: list[dict[str, FeatureScalar]],
    timeout_s: float = 5.0,
) -> list[asyncio.Task[ModelAnswer]]:
    return [
        asyncio.create_task(client.infer(target, r, Deadline.after(timeout_s), f"r{i}"))
        for i, r in enumerate(rows)
    ]


async def _no_call_within(fake: FakeModelClient, seconds: float) -> None:
    """Proves no runtime call is made for ``seconds`` (a time window, on purpose)."""
    with pytest.raises(TimeoutError):
        await fake.next_call(timeout_s=seconds)


async def _warm(client: BatchingModelClient, fake: FakeModelClient, target: ModelTarget,
                clock: Clock, call_s: float) -> None:  # fmt: skip
    """One call the lane sees take ``call_s``: it learns its call time."""
    (task,) = _send(client, target, _rows(1))
    call = await fake.next_call()
    clock.now += call_s
    call.answer()
    await task


async def test_a_lone_row_is_sent_alone_at_once(target: ModelTarget) -> None:
    fake = FakeModelClient()
    client = _client(fake)
    (task,) = _send(client, target, _rows(1))
    call = await fake.next_call()
    assert (len(call.rows), call.batch) == (1, False)
    call.answer()
    assert (await task).batch_size == 1
    assert client.batch_sizes == Counter({1: 1})


async def test_rows_behind_an_outstanding_call_go_in_one_call_when_it_returns(
    target: ModelTarget,
) -> None:
    fake = FakeModelClient()
    client = _client(fake)
    lone = _send(client, target, _rows(1))
    first = await fake.next_call()
    queued = [*_send(client, target, _rows(1), 1.0), *_send(client, target, _rows(2), 3.0)]
    await _no_call_within(fake, 0.02)  # queued behind the outstanding call, not sent
    first.answer()
    batch = await fake.next_call()
    assert (len(batch.rows), batch.batch) == (3, True)
    # The call's deadline is the latest of its rows' (each row still leaves at its own).
    assert batch.deadline.remaining() == pytest.approx(3.0, abs=0.1)
    batch.answer()
    answers = await asyncio.gather(*lone, *queued)
    assert [a.batch_size for a in answers] == [1, 3, 3, 3]
    assert client.batch_sizes == Counter({1: 1, 3: 1})


async def test_max_size_sends_a_full_batch_without_waiting_for_the_outstanding_call(
    target: ModelTarget,
) -> None:
    fake = FakeModelClient()
    client = _client(fake, max_size=4)
    lone = _send(client, target, _rows(1))
    first = await fake.next_call()
    queued = _send(client, target, _rows(8))
    full = [await fake.next_call(), await fake.next_call()]  # while the first is outstanding
    assert [len(c.rows) for c in full] == [4, 4]
    for call in [first, *full]:
        call.answer()
    answers = await asyncio.gather(*lone, *queued)
    assert [a.batch_size for a in answers] == [1] + [4] * 8


async def test_a_failed_batch_call_fails_every_row_in_it_each_with_its_own_error(
    target: ModelTarget,
) -> None:
    fake = FakeModelClient()
    client = _client(fake, max_size=4)
    lone = _send(client, target, _rows(1))
    first = await fake.next_call()
    queued = _send(client, target, _rows(4))
    batch = await fake.next_call()
    first.answer()
    batch.fail(RuntimeUnavailable("runtime down (test)"))
    results = await asyncio.gather(*queued, return_exceptions=True)
    assert all(isinstance(r, RuntimeUnavailable) for r in results), results
    assert len({id(r) for r in results}) == len(results)  # a handler may rewrite its own
    assert (await lone[0]).batch_size == 1  # the lone row's call answered


async def test_each_row_keeps_its_own_deadline_in_a_batch(target: ModelTarget) -> None:
    fake = FakeModelClient()
    client = _client(fake, max_size=2)
    lone = _send(client, target, _rows(1))
    first = await fake.next_call()
    (short,) = _send(client, target, _rows(1), timeout_s=0.03)
    (long,) = _send(client, target, _rows(1))
    batch = await fake.next_call()  # full at 2: sent while the first is outstanding
    with pytest.raises(RuntimeDeadlineExceeded):
        await short  # leaves at its own deadline, the call it rode in still outstanding
    assert not long.done()
    batch.answer()
    first.answer()
    assert (await long).batch_size == 2
    assert (await lone[0]).batch_size == 1


async def test_rows_behind_a_uniformly_slow_runtime_wait_for_the_call_ahead(
    target: ModelTarget,
) -> None:
    # The lane's calls take 10 s (by its clock): a queue's patience is twice that, far past
    # max_wait, since sending early would only queue the rows behind the first call.
    fake, clock = FakeModelClient(), Clock()
    client = _client(fake, clock, max_wait_s=0.01)
    await _warm(client, fake, target, clock, call_s=10.0)
    lone = _send(client, target, _rows(1))
    first = await fake.next_call()
    queued = _send(client, target, _rows(3))
    await _no_call_within(fake, 0.05)  # five times max_wait: still waiting for the call ahead
    first.answer()
    batch = await fake.next_call()
    assert len(batch.rows) == 3
    batch.answer()
    await asyncio.gather(*lone, *queued)


async def test_rows_behind_a_straggling_call_go_without_it_after_max_wait(
    target: ModelTarget,
) -> None:
    # The lane's calls have been fast (1 ms), so one that hangs is a straggler: the rows queued
    # behind it leave after max_wait in a call of their own.
    fake, clock = FakeModelClient(), Clock()
    client = _client(fake, clock, max_wait_s=0.02)
    await _warm(client, fake, target, clock, call_s=0.001)
    lone = _send(client, target, _rows(1))
    straggler = await fake.next_call()
    queued = _send(client, target, _rows(3))
    batch = await fake.next_call(timeout_s=1.0)  # sent while the straggler is outstanding
    assert len(batch.rows) == 3 and not straggler.future.done()
    batch.answer()
    straggler.answer()
    await asyncio.gather(*lone, *queued)


async def _held(
    target: ModelTarget, busy: float
) -> tuple[BatchingModelClient, FakeModelClient, list[asyncio.Task[ModelAnswer]]]:
    """A lone call with three rows queued behind it, answered while the gateway's loop is
    ``busy``: the client, the fake and the queued rows (not yet sent)."""
    fake, clock = FakeModelClient(), Clock()
    client = _client(fake, clock, max_wait_s=0.05, hold_busy=0.85, load=lambda: busy)
    # The lane's calls take 10 s: its queues' patience (20 s) is far longer than any hold.
    await _warm(client, fake, target, clock, call_s=10.0)
    lone = _send(client, target, _rows(1))
    first = await fake.next_call()
    queued = _send(client, target, _rows(3))
    first.answer()
    await lone[0]
    return client, fake, queued


async def test_a_gateway_with_spare_time_sends_queued_rows_when_the_call_ahead_returns(
    target: ModelTarget,
) -> None:
    _, fake, queued = await _held(target, busy=0.5)
    batch = await fake.next_call(timeout_s=0.04)  # at once, well inside max_wait
    assert len(batch.rows) == 3
    batch.answer()
    await asyncio.gather(*queued)


async def test_a_saturated_gateway_holds_queued_rows_for_more_up_to_max_wait(
    target: ModelTarget,
) -> None:
    client, fake, queued = await _held(target, busy=0.95)
    assert client.holding
    more = _send(client, target, _rows(2))  # arrive during the hold: they join it
    # The hold ends max_wait (50 ms) after the return, not at the rows' patience (20 s).
    batch = await fake.next_call(timeout_s=0.5)
    assert len(batch.rows) == 5
    batch.answer()
    await asyncio.gather(*queued, *more)


def test_the_hold_ends_only_well_below_the_busy_share_that_started_it() -> None:
    switch = HoldSwitch(0.85)
    states = [switch.update(busy) for busy in (0.84, 0.9, 0.8, 0.76, 0.74, 0.8, 0.86)]
    assert states == [False, True, True, True, False, False, True]
