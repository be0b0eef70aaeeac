"""The decision core in process, in milliseconds: orchestration, fallback, deadline and records
for Score and ScoreBatch, against FakeModelClient (a stand-in for the runtimes; the real runtime
is exercised in test_decision_service.py, test_traffic_management.py and test_batching.py).

Score is a batch of one, so each behaviour is checked on both paths: they must not drift.
"""

from __future__ import annotations

import asyncio
import copy
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from opentelemetry.trace import Span
from support.fake_model_client import FAKE_RUNTIME, FakeModelClient, constant

from gateway.decisions.service import DecisionService, ScoreInput
from gateway.demo_rules import DEMO_RULES
from gateway.errors import (
    GatewayError,
    InvalidRequest,
    ModelRuntimeError,
    RuntimeDeadlineExceeded,
    RuntimeUnavailable,
)
from gateway.metrics import GatewayMetrics
from gateway.outbox.errors import OutboxFull
from gateway.routing.compiled import Routes, load_routes
from lineage.v1.record import DecisionRecord
from runtimes.manifest import Manifest
from runtimes.training.datasets import sample_requests

Config = dict[str, Any]
Result = DecisionRecord | GatewayError


class ListSink:
    """Keeps what it is given; ``full`` makes it refuse new records as a full outbox does."""

    records_on_spans = False

    def __init__(self) -> None:
        self.records: list[DecisionRecord] = []
        self.full = False

    def check_capacity(self) -> None:
        if self.full:
            raise OutboxFull("outbox full (test)")

    async def emit(self, record: DecisionRecord, span: Span) -> None:
        self.records.append(record)

    async def emit_batch(self, records: Sequence[DecisionRecord], span: Span) -> None:
        self.records.extend(records)


@pytest.fixture
def make_routes(
    manifests: dict[tuple[str, str], Manifest],
    demo_config: Callable[[str], Config],
    tmp_path: Path,
) -> Callable[..., Routes]:
    def build(**point: Any) -> Routes:
        config = copy.deepcopy(demo_config("127.0.0.1:1"))
        config["rules"] = {"card-fraud-rules": {"file": "card-fraud-rules.yaml"}}
        config["decision_points"]["card-fraud"].update(point)
        shutil.copy(DEMO_RULES["card-fraud"], tmp_path / "card-fraud-rules.yaml")
        path = tmp_path / "routes.yaml"
        path.write_text(yaml.safe_dump(config))
        return load_routes(path, manifests)

    return build


def _service(routes: Routes, client: FakeModelClient, sink: ListSink) -> DecisionService:
    return DecisionService(routes, client, None, sink, "test:1", metrics=GatewayMetrics())


def _rows(count: int, seed: int = 0) -> list[ScoreInput]:
    features = sample_requests("card-fraud", count, seed=seed)
    return [
        ScoreInput(f"req-{seed}-{i}", "card-fraud", f"cust-{seed}-{i}", f)
        for i, f in enumerate(features)
    ]


async def _decide(
    service: DecisionService, rows: list[ScoreInput], path: str, **kw: Any
) -> list[Result]:
    """Each row's outcome through Score (one call per row, concurrently) or one ScoreBatch."""
    if path == "score":
        outcomes = await asyncio.gather(
            *(service.score(r, **kw) for r in rows), return_exceptions=True
        )
        assert all(isinstance(o, Result) for o in outcomes), outcomes
        return [o for o in outcomes if isinstance(o, Result)]
    return await service.score_batch("card-fraud", rows, **kw)


PATHS = ["score", "batch"]
NO_RETRY = {"num_retries": 0}
CHAIN_V2_THEN_RULES = {
    "chain": [{"model": "card-fraud", "version": "2"}, {"rules": "card-fraud-rules"}]
}


@pytest.mark.parametrize("path", PATHS)
async def test_the_next_version_in_the_chain_answers_when_the_routed_one_cannot(
    path: str, make_routes: Callable[..., Routes]
) -> None:
    client, sink = FakeModelClient(), ListSink()
    service = _service(make_routes(fallback=CHAIN_V2_THEN_RULES, retry=NO_RETRY), client, sink)
    rows = _rows(3)
    decided = asyncio.create_task(_decide(service, rows, path))
    calls = [await client.next_call() for _ in range(3 if path == "score" else 1)]
    assert {c.target.version for c in calls} == {"1"}
    for call in calls:
        call.fail(RuntimeUnavailable("model card-fraud-v1 at 127.0.0.1:1 unavailable (test)"))
    for _ in calls:
        retry = await client.next_call()
        assert retry.target.version == "2"
        retry.answer(constant(0.9))
    results = await decided
    assert [r.request_id for r in results if isinstance(r, DecisionRecord)] == [
        r.request_id for r in rows
    ]
    for record in results:
        assert isinstance(record, DecisionRecord)
        assert (record.arm, record.fallback_reason) == ("fallback", "unavailable")
        assert (record.model_version, record.runtime_instance) == ("2", FAKE_RUNTIME)
        assert (record.score, record.decision) == (0.9, "decline")
        assert record.extra["fallback_from"] == "card-fraud-v1"
        assert "unavailable (test)" in record.extra["fallback_error"]
    assert sorted(r.decision_id for r in sink.records) == sorted(
        r.decision_id for r in results if isinstance(r, DecisionRecord)
    )


@pytest.mark.parametrize("path", PATHS)
async def test_when_nothing_in_the_chain_answers_every_error_is_reported(
    path: str, make_routes: Callable[..., Routes]
) -> None:
    client, sink = FakeModelClient(), ListSink()
    chain = {"chain": [{"model": "card-fraud", "version": "2"}]}
    service = _service(make_routes(fallback=chain, retry=NO_RETRY), client, sink)
    decided = asyncio.create_task(_decide(service, _rows(2), path))
    for version in ("1", "2"):
        for _ in range(2 if path == "score" else 1):
            call = await client.next_call()
            assert call.target.version == version
            call.fail(RuntimeUnavailable(f"v{version} down (test)"))
    results = await decided
    assert len(results) == 2
    for error in results:
        assert isinstance(error, RuntimeUnavailable)
        assert "v1 down (test)" in str(error)
        assert "and no fallback could answer: v2 down (test)" in str(error)
    assert sink.records == []


@pytest.mark.parametrize("path", PATHS)
async def test_a_full_sink_refuses_before_any_runtime_call(
    path: str, make_routes: Callable[..., Routes]
) -> None:
    client, sink = FakeModelClient(auto=constant(0.2)), ListSink()
    service = _service(make_routes(), client, sink)
    sink.full = True
    with pytest.raises(OutboxFull):
        if path == "score":
            await service.score(_rows(1)[0])
        else:
            await service.score_batch("card-fraud", _rows(5))
    assert client.calls == []
    sink.full = False
    assert len(await _decide(service, _rows(2), path)) == 2


@pytest.mark.parametrize("path", PATHS)
async def test_one_deadline_the_callers_less_the_fallbacks_reserve(
    path: str, make_routes: Callable[..., Routes]
) -> None:
    client, sink = FakeModelClient(), ListSink()
    fallback = {"chain": [{"rules": "card-fraud-rules"}], "reserve_ms": 20}
    service = _service(make_routes(fallback=fallback, timeout_ms=250), client, sink)
    started = time.monotonic()
    decided = asyncio.create_task(_decide(service, _rows(1), path, time_remaining_s=0.06))
    call = await client.next_call()
    # The runtime call gets the caller's 60 ms (sooner than the route's 250), less the reserve.
    assert call.deadline.at - started == pytest.approx(0.04, abs=0.005)
    (record,) = await decided  # the fake never answers: its deadline passes, the rules answer
    elapsed = time.monotonic() - started
    assert isinstance(record, DecisionRecord)
    assert (record.arm, record.fallback_reason, record.model_name) == (
        "fallback",
        "timeout",
        "card-fraud-rules",
    )
    assert 0.04 <= elapsed < 0.06, elapsed


@pytest.mark.parametrize("path", PATHS)
async def test_a_callers_deadline_already_passed_calls_no_model(
    path: str, make_routes: Callable[..., Routes]
) -> None:
    client, sink = FakeModelClient(auto=constant(0.2)), ListSink()
    service = _service(make_routes(fallback=CHAIN_V2_THEN_RULES), client, sink)
    with pytest.raises(RuntimeDeadlineExceeded, match="deadline passed"):
        if path == "score":
            await service.score(_rows(1)[0], time_remaining_s=0.0)
        else:
            await service.score_batch("card-fraud", _rows(3), time_remaining_s=0.0)
    assert client.calls == [] and sink.records == []


async def test_a_batch_makes_one_runtime_call_per_routed_version(
    make_routes: Callable[..., Routes],
) -> None:
    client, sink = (
        FakeModelClient(auto=lambda t, _row: 0.6 if t.version == "2" else 0.1),
        ListSink(),
    )
    canary = {"target": {"model": "card-fraud", "version": "2"}, "weight": 50}
    service = _service(make_routes(canary=canary), client, sink)
    rows = _rows(40)
    results = await service.score_batch("card-fraud", rows)
    assert sorted((c.target.version, c.batch) for c in client.calls) == [("1", True), ("2", True)]
    assert sum(len(c.rows) for c in client.calls) == 40
    records = [r for r in results if isinstance(r, DecisionRecord)]
    assert [r.request_id for r in records] == [r.request_id for r in rows]  # the rows' order
    arms = {(r.arm, r.model_version, r.decision) for r in records}
    assert arms == {("primary", "1", "approve"), ("canary", "2", "review")}
    # Sticky per entity: Score routes each row exactly as the batch did.
    singles = [await service.score(r) for r in rows]
    assert [s.arm for s in singles] == [r.arm for r in records]


@pytest.mark.parametrize("path", PATHS)
async def test_a_pinned_version_answers_alone_with_no_fallback(
    path: str, make_routes: Callable[..., Routes]
) -> None:
    client, sink = FakeModelClient(), ListSink()
    service = _service(make_routes(fallback=CHAIN_V2_THEN_RULES, retry=NO_RETRY), client, sink)
    rows = _rows(1)
    if path == "score":
        rows[0].model_version = "2"
        decided = asyncio.create_task(_decide(service, rows, path))
    else:
        decided = asyncio.create_task(_decide(service, rows, path, model_version="2"))
    call = await client.next_call()
    assert call.target.version == "2"
    call.fail(RuntimeUnavailable("v2 down (test)"))
    (error,) = await decided
    assert isinstance(error, ModelRuntimeError) and "no fallback" not in str(error)
    assert len(client.calls) == 1


async def test_a_bad_row_in_a_batch_gets_its_own_error_and_the_others_are_decided(
    make_routes: Callable[..., Routes],
) -> None:
    client, sink = FakeModelClient(auto=constant(0.2)), ListSink()
    service = _service(make_routes(), client, sink)
    rows = _rows(3)
    rows[1].features = {**rows[1].features, "amount": -5.0}
    rows[2].entity_key = ""
    results = await service.score_batch("card-fraud", rows)
    assert isinstance(results[0], DecisionRecord)
    assert isinstance(results[1], InvalidRequest) and isinstance(results[2], InvalidRequest)
    assert [v.field for v in results[1].violations] == ["rows[1].features.amount"]
    assert [v.field for v in results[2].violations] == ["rows[2].entity_key"]
    assert [len(c.rows) for c in client.calls] == [1]
    with pytest.raises(InvalidRequest) as refused:
        await service.score(rows[1])
    assert [v.field for v in refused.value.violations] == ["features.amount"]


@pytest.mark.parametrize("path", PATHS)
async def test_a_fallback_in_flight_across_a_reload_is_recorded_under_the_config_it_was_routed_by(
    path: str, make_routes: Callable[..., Routes]
) -> None:
    rules_only = {"chain": [{"rules": "card-fraud-rules"}]}
    client, sink = FakeModelClient(), ListSink()
    before = make_routes(fallback=rules_only, retry=NO_RETRY, timeout_ms=800)
    service = _service(before, client, sink)
    decided = asyncio.create_task(_decide(service, _rows(2), path))
    calls = [await client.next_call() for _ in range(2 if path == "score" else 1)]
    after = make_routes(fallback=rules_only, retry=NO_RETRY, timeout_ms=900)
    assert after.config_version != before.config_version
    service.apply(after)
    for call in calls:
        call.fail(RuntimeUnavailable("card-fraud-v1 down (test)"))
    results = await decided
    for record in results:
        assert isinstance(record, DecisionRecord)
        assert (record.arm, record.fallback_reason) == ("fallback", "unavailable")
        assert record.config_version == before.config_version
    assert {r.config_version for r in sink.records} == {before.config_version}
    # Decisions routed after the reload carry the new version.
    deciding = asyncio.create_task(_decide(service, _rows(1, seed=1), path))
    (await client.next_call()).answer(constant(0.1))
    (later,) = await deciding
    assert isinstance(later, DecisionRecord) and later.arm == "primary"
    assert later.config_version == after.config_version
