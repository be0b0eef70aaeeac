"""Batch failure isolation on real processes: Score calls in flight together share a micro-batch
that the runtime refuses because of one row; only that row fails (or falls back, per its route),
the others are answered by the model, and the circuit stays closed.

A real gateway and the real runtime, with the fault proxy between them. The gateway validates
every feature before the runtime sees it, so the refusal is injected on the wire: the proxy
answers INVALID_ARGUMENT to any ModelInfer whose message holds the float32 bytes of one
distinctive amount, as a runtime refusing one row's input would, and passes everything else to
the runtime. The proxy keeps every message it saw, which proves what was batched with what.
"""

from __future__ import annotations

import asyncio
import struct
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from fault_proxy import FaultProxy, Refusal, SeenRequest
from support.waiting import wait_until_async

from gateway.demo_rules import DEMO_RULES
from loadtests.local.topology import ManagedProcess, free_port, start_gateway
from oip.v2 import grpc_predict_v2_pb2 as pb
from runtimes.training.datasets import sample_requests
from scoring.v1 import scoring_pb2, scoring_pb2_grpc
from scoring.v1.requests import score_batch_request, score_request

BAD_AMOUNT = 4321.125
"""Exact in float32, and no sample row's amount (they have two decimals)."""
REFUSAL = Refusal(struct.pack("<f", BAD_AMOUNT), message="input 'amount' refused (fault proxy)")
GOOD_ROWS = 8
# The runtime's answers are this late: the leader's call is still out while the rows queue.
DELAY_S = 0.2
GUARDED = "card-fraud-guarded"
"""card-fraud's model with the demo rules as its fallback."""


@pytest.fixture(scope="module")
def proxy(runtime: ManagedProcess) -> Iterator[FaultProxy]:
    proxy = FaultProxy(runtime.address).start()
    yield proxy
    proxy.stop()


@pytest.fixture(scope="module")
def gateway(
    proxy: FaultProxy,
    demo_config: Callable[[str], dict[str, Any]],
    model_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ManagedProcess]:
    workdir = tmp_path_factory.mktemp("gateway")
    config = demo_config(proxy.address)
    points = config["decision_points"]
    points["card-fraud"]["timeout_ms"] = 3000  # room for the proxy's delay, twice
    points[GUARDED] = {
        **points["card-fraud"],
        "fallback": {"chain": [{"rules": "card-fraud-rules"}]},
    }
    config["rules"] = {"card-fraud-rules": {"file": "card-fraud-rules.yaml"}}
    (workdir / "card-fraud-rules.yaml").write_text(DEMO_RULES["card-fraud"].read_text())
    routes = workdir / "routes.yaml"
    routes.write_text(yaml.safe_dump(config, sort_keys=False))
    # The longest max wait: rows queued behind the leader wait for it (or 100 ms) to leave.
    extra = ["--metrics-port", str(free_port()), "--batch-max-wait-us", "100000"]
    proc = start_gateway(routes, model_dir, workdir, extra_args=extra)
    try:
        yield proc
    finally:
        assert proc.stop() == 0, proc.log_tail()


@pytest.fixture
async def scoring(
    gateway: ManagedProcess, proxy: FaultProxy
) -> AsyncIterator[scoring_pb2_grpc.ScoringServiceStub]:
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        yield scoring_pb2_grpc.ScoringServiceStub(channel)
    proxy.refuse(None)
    proxy.set("pass")


def _metric(gateway: ManagedProcess, prefix: str) -> float:
    with urllib.request.urlopen(f"http://{gateway.info['metrics']}/metrics", timeout=5) as r:
        text = r.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix)
    )


def _requests(point: str, seed: int) -> list[scoring_pb2.ScoreRequest]:
    """GOOD_ROWS valid rows, and one more (the last) whose amount the proxy refuses."""
    rows = sample_requests("card-fraud", GOOD_ROWS + 1, seed=seed)
    rows[-1] = {**rows[-1], "amount": BAD_AMOUNT}
    return [score_request(f"{point}-{seed}-{i}", point, f"e-{i}", r) for i, r in enumerate(rows)]


def _rows(seen: SeenRequest) -> int:
    """Rows in a ModelInfer message as the gateway sent it (after gRPC's 5-byte prefix)."""
    request = pb.ModelInferRequest.FromString(seen.message[5:])
    return int(request.inputs[0].shape[0])


async def _in_flight_together(
    scoring: scoring_pb2_grpc.ScoringServiceStub,
    proxy: FaultProxy,
    requests: list[scoring_pb2.ScoreRequest],
) -> tuple[scoring_pb2.ScoreResponse, list[scoring_pb2.ScoreResponse | grpc.aio.AioRpcError]]:
    """A leader call, then ``requests`` all at once while it is out: they queue behind it and
    leave as one micro-batch. Returns the leader's answer and each request's outcome."""
    proxy.refuse(REFUSAL)
    proxy.set("pass", delay_s=DELAY_S)

    async def outcome(r: scoring_pb2.ScoreRequest) -> Any:
        try:
            return await scoring.Score(r, timeout=10)
        except grpc.aio.AioRpcError as e:
            return e

    leader_row = sample_requests("card-fraud", 1, seed=99)[0]
    point = requests[0].decision_point
    leader = asyncio.create_task(outcome(score_request("leader", point, "e-l", leader_row)))
    await wait_until_async(lambda: proxy.requests_seen(), 5, "the leader's call at the proxy")
    outcomes = await asyncio.gather(*(outcome(r) for r in requests))
    return await leader, list(outcomes)


async def _alone(
    scoring: scoring_pb2_grpc.ScoringServiceStub, requests: list[scoring_pb2.ScoreRequest]
) -> list[float]:
    """Each request's score when it is the only call: the row scored alone by the model."""
    return [(await scoring.Score(r, timeout=10)).score for r in requests]


def _assert_one_refused_batch_then_each_row_alone(seen: list[SeenRequest], rows: int) -> None:
    leader, batch, *alone = seen
    assert (_rows(leader), leader.refused) == (1, False)
    assert (_rows(batch), batch.refused) == (rows, True)  # every row in one call, refused
    assert sorted((_rows(s), s.refused) for s in alone) == [(1, False)] * (rows - 1) + [(1, True)]


async def test_one_refused_row_fails_alone_and_the_rows_batched_with_it_are_answered_by_the_model(
    gateway: ManagedProcess, proxy: FaultProxy, scoring: scoring_pb2_grpc.ScoringServiceStub
) -> None:
    requests = _requests("card-fraud", seed=21)
    expected = await _alone(scoring, requests[:GOOD_ROWS])
    calls_before = _metric(gateway, "scoregate_gateway_runtime_call_rows_count")
    resent_before = _metric(gateway, "scoregate_gateway_batch_rows_resent_total")

    leader, outcomes = await _in_flight_together(scoring, proxy, requests)

    *good, bad = outcomes
    assert leader.arm == "primary"
    for reply, score in zip(good, expected, strict=True):
        assert isinstance(reply, scoring_pb2.ScoreResponse), reply
        assert (reply.arm, reply.model_name, reply.model_version) == ("primary", "card-fraud", "1")
        assert reply.score == score  # the model's own score for that row, sent alone
    assert isinstance(bad, grpc.aio.AioRpcError)
    assert bad.code() == grpc.StatusCode.INTERNAL
    assert "INVALID_ARGUMENT: input 'amount' refused (fault proxy)" in (bad.details() or "")
    rows = GOOD_ROWS + 1
    _assert_one_refused_batch_then_each_row_alone(proxy.requests_seen(), rows)
    # The gateway's own account: the leader, the batch, then each row alone.
    assert _metric(gateway, "scoregate_gateway_runtime_call_rows_count") - calls_before == 2 + rows
    assert _metric(gateway, "scoregate_gateway_batch_rows_resent_total") - resent_before == rows
    # One failure for the breaker (the refused row's), not one per row batched with it.
    assert _metric(gateway, "scoregate_gateway_circuit_state{") == 0
    proxy.refuse(None)
    proxy.set("pass")
    assert (await scoring.Score(requests[0], timeout=10)).arm == "primary"


async def test_the_refused_row_takes_its_routes_fallback_and_the_others_stay_on_the_model(
    proxy: FaultProxy, scoring: scoring_pb2_grpc.ScoringServiceStub
) -> None:
    requests = _requests(GUARDED, seed=22)
    _, outcomes = await _in_flight_together(scoring, proxy, requests)
    *good, bad = outcomes
    assert all(
        isinstance(r, scoring_pb2.ScoreResponse) and (r.arm, r.model_version) == ("primary", "1")
        for r in good
    ), good
    assert isinstance(bad, scoring_pb2.ScoreResponse)
    assert (bad.arm, bad.fallback_reason, bad.model_name) == (
        "fallback",
        "runtime_error",
        "card-fraud-rules",
    )
    _assert_one_refused_batch_then_each_row_alone(proxy.requests_seen(), GOOD_ROWS + 1)


@pytest.mark.parametrize("point", ["card-fraud", GUARDED])
async def test_a_score_batch_row_the_runtime_refuses_fails_alone_and_the_others_are_scored(
    point: str, proxy: FaultProxy, scoring: scoring_pb2_grpc.ScoringServiceStub
) -> None:
    """A ScoreBatch group the runtime refuses is split in halves until the refused row is
    found: only that row falls back (or fails), the others keep the model's answer."""
    rows = sample_requests("card-fraud", 16, seed=23)
    rows[5] = {**rows[5], "amount": BAD_AMOUNT}
    request = score_batch_request(point, [(f"b-{i}", f"e-{i}", r) for i, r in enumerate(rows)])
    proxy.refuse(REFUSAL)
    reply = await scoring.ScoreBatch(request, timeout=10)
    seen = proxy.requests_seen()
    # 16 refused, 8+8 (one refused), 4+4, 2+2, 1+1: the bad row found in 9 calls.
    assert sorted((_rows(s) for s in seen), reverse=True) == [16, 8, 8, 4, 4, 2, 2, 1, 1]
    assert sorted(_rows(s) for s in seen if s.refused) == [1, 2, 4, 8, 16]
    good = [r for i, r in enumerate(reply.results) if i != 5]
    assert all(
        (r.WhichOneof("result"), r.decision.arm, r.decision.fallback_reason)
        == ("decision", "primary", "")
        for r in good
    )
    proxy.refuse(None)
    alone = await _alone(
        scoring, [score_request(f"a-{i}", point, f"e-{i}", r) for i, r in enumerate(rows) if i != 5]
    )
    assert [r.decision.score for r in good] == alone
    bad = reply.results[5]
    if point == GUARDED:
        assert (bad.decision.arm, bad.decision.fallback_reason) == ("fallback", "runtime_error")
    else:
        assert (bad.WhichOneof("result"), bad.error.code) == ("error", "INTERNAL")
        assert "INVALID_ARGUMENT" in bad.error.message


async def test_refused_rows_do_not_open_the_circuit_for_other_callers(
    gateway: ManagedProcess, proxy: FaultProxy, scoring: scoring_pb2_grpc.ScoringServiceStub
) -> None:
    """Twice the breaker's consecutive-failure threshold of refused calls in a row: the runtime
    answered each, so its circuit stays closed and the next caller is scored by the model."""
    proxy.refuse(REFUSAL)
    bad = sample_requests("card-fraud", 1, seed=24)[0] | {"amount": BAD_AMOUNT}
    for i in range(10):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await scoring.Score(score_request(f"r-{i}", "card-fraud", "e-r", bad), timeout=10)
        assert caught.value.code() == grpc.StatusCode.INTERNAL
    good = sample_requests("card-fraud", 1, seed=25)[0]
    answer = await scoring.Score(score_request("g", "card-fraud", "e-g", good), timeout=10)
    assert (answer.arm, answer.fallback_reason) == ("primary", "")
    assert _metric(gateway, "scoregate_gateway_circuit_state") == 0
