"""Deadlines, retries, hedges, breakers, fallbacks and shadows: the core against the real runtime,
reached through fault-injecting proxies that make it slow, hang or go down on command."""

from __future__ import annotations

import asyncio
import copy
import shutil
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from fault_proxy import FaultProxy
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.decisions.service import DecisionService, ScoreInput
from gateway.demo_rules import DEMO_RULES
from gateway.errors import RuntimeUnavailable
from gateway.metrics import GatewayMetrics
from gateway.recording.sinks import SpanAttributeSink
from gateway.routing.compiled import load_routes
from gateway.runtime_client.oip import OipModelClient
from lineage.v1.record import PARENT_DECISION_ID, DecisionRecord, record_from_json
from lineage.v1.spans import RECORD_ATTRIBUTE
from loadtests.local.topology import ManagedProcess
from runtimes.manifest import Manifest
from runtimes.training.datasets import sample_requests

Config = dict[str, Any]


@pytest.fixture
def proxies(runtime: ManagedProcess) -> Iterator[Callable[[], FaultProxy]]:
    started: list[FaultProxy] = []

    def new() -> FaultProxy:
        proxy = FaultProxy(runtime.address).start()
        started.append(proxy)
        return proxy

    yield new
    for proxy in started:
        proxy.stop()


@dataclass
class Harness:
    service: DecisionService
    exporter: InMemorySpanExporter

    def records(self) -> list[DecisionRecord]:
        return [
            record_from_json(str((s.attributes or {})[RECORD_ATTRIBUTE]))
            for s in self.exporter.get_finished_spans()
        ]

    def metric(self, name: str, **labels: str) -> float:
        value = self.service.metrics.registry.get_sample_value(name, labels)
        return value or 0.0


@pytest.fixture
async def harness(
    manifests: dict[tuple[str, str], Manifest],
    demo_config: Callable[[str], Config],
    tmp_path: Path,
) -> AsyncIterator[Callable[..., Harness]]:
    """Builds a DecisionService for the demo config with changes, on given endpoints."""
    cleanups: list[tuple[OipModelClient, TracerProvider]] = []

    def build(
        v1: list[str], v2: list[str] | None = None, max_in_flight: int | None = None,
        shadow_max_in_flight: int = 64, **point: Any,
    ) -> Harness:  # fmt: skip
        config = copy.deepcopy(demo_config("127.0.0.1:1"))
        versions = config["models"]["card-fraud"]["versions"]
        versions["1"]["endpoints"] = v1
        versions["2"]["endpoints"] = v2 or v1
        config["rules"] = {"card-fraud-rules": {"file": "card-fraud-rules.yaml"}}
        config["circuit_breaker"] = point.pop("circuit_breaker", {})
        config["decision_points"]["card-fraud"].update(point)
        shutil.copy(DEMO_RULES["card-fraud"], tmp_path / "card-fraud-rules.yaml")
        path = tmp_path / "routes.yaml"
        path.write_text(yaml.safe_dump(config))
        routes = load_routes(path, manifests)
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        client = OipModelClient(routes.targets)
        cleanups.append((client, provider))
        service = DecisionService(
            routes, client, provider.get_tracer("t"), SpanAttributeSink(), "test:1",
            metrics=GatewayMetrics(), max_in_flight=max_in_flight,
            shadow_max_in_flight=shadow_max_in_flight,
        )  # fmt: skip
        return Harness(service, exporter)

    yield build
    for client, provider in cleanups:
        await client.close()
        provider.shutdown()


# The reserve leaves room for a loaded CI machine's scheduling between the timeout and the answer.
RULES_FALLBACK = {"chain": [{"rules": "card-fraud-rules"}], "reserve_ms": 30}


def _input(seed: int = 5, entity: str = "cust-1", **changes: Any) -> ScoreInput:
    features = sample_requests("card-fraud", 1, seed=seed)[0]
    values = {"request_id": f"req-{seed}", "decision_point": "card-fraud", "entity_key": entity}
    values.update(changes)
    return ScoreInput(features=features, **values)


async def test_a_hanging_runtime_is_answered_by_the_fallback_before_the_callers_deadline(
    harness: Callable[..., Harness], proxies: Callable[[], FaultProxy]
) -> None:
    proxy = proxies()
    h = harness([proxy.address], fallback=RULES_FALLBACK)
    assert (await h.service.score(_input())).arm == "primary"  # channel up, model answers
    proxy.set("hang")
    started = time.monotonic()
    record = await h.service.score(_input(seed=6), time_remaining_s=0.1)
    elapsed = time.monotonic() - started
    assert elapsed < 0.1, f"answered after {elapsed * 1000:.0f} ms"
    assert (record.arm, record.fallback_reason) == ("fallback", "timeout")
    assert (record.model_name, record.model_version) == ("card-fraud-rules", "card-fraud-rules-1")
    assert record.reason_catalogue_version == "card-fraud-rules-1"
    assert record.extra["fallback_from"] == "card-fraud-v1"
    assert record.attempts == 1  # a timeout is not retried: it has spent the budget
    assert h.metric("scoregate_gateway_fallbacks_total", decision_point="card-fraud",
                    reason="timeout") == 1  # fmt: skip


async def test_a_runtime_that_is_down_falls_back_flagged_unavailable(
    harness: Callable[..., Harness], proxies: Callable[[], FaultProxy]
) -> None:
    proxy = proxies()
    proxy.set("down")
    h = harness([proxy.address], fallback=RULES_FALLBACK)
    record = await h.service.score(_input(), time_remaining_s=1.0)
    assert (record.arm, record.fallback_reason) == ("fallback", "unavailable")
    assert record.attempts == 2  # the default one retry, on the only endpoint


async def test_another_model_version_is_the_first_fallback(
    harness: Callable[..., Harness], proxies: Callable[[], FaultProxy]
) -> None:
    down, up = proxies(), proxies()
    down.set("down")
    h = harness(
        [down.address], [up.address],
        fallback={"chain": [{"model": "card-fraud", "version": "2"},
                            {"rules": "card-fraud-rules"}]},
    )  # fmt: skip
    record = await h.service.score(_input())
    assert (record.arm, record.fallback_reason, record.model_version) == (
        "fallback",
        "unavailable",
        "2",
    )
    assert record.extra["endpoint"] == up.address


async def test_without_a_fallback_the_caller_gets_a_clear_error(
    harness: Callable[..., Harness], proxies: Callable[[], FaultProxy]
) -> None:
    proxy = proxies()
    proxy.set("down")
    h = harness([proxy.address])
    with pytest.raises(RuntimeUnavailable, match=f"card-fraud-v1 at {proxy.address} unavailable"):
        await h.service.score(_input())


async def test_the_circuit_opens_after_n_failures_fails_fast_and_closes_after_recovery(
    harness: Callable[..., Harness], proxies: Callable[[], FaultProxy]
) -> None:
    proxy = proxies()
    h = harness(
        [proxy.address], fallback=RULES_FALLBACK, retry={"num_retries": 0},
        circuit_breaker={"consecutive_failures": 3, "open_ms": 300},
    )  # fmt: skip
    state = lambda: h.metric("scoregate_gateway_circuit_state", endpoint=proxy.address)  # noqa: E731
    assert (await h.service.score(_input())).arm == "primary"
    proxy.set("down")
    reasons = [(await h.service.score(_input(seed=s))).fallback_reason for s in range(5)]
    assert reasons == ["unavailable"] * 3 + ["circuit_open"] * 2
    assert state() == 2  # open
    open_record = h.records()[-1]
    assert open_record.attempts == 0  # failed fast: the runtime was not called

    proxy.set("pass")
    # Every 300 ms a half-open probe goes through; once the channel has reconnected one succeeds.
    deadline = time.monotonic() + 5
    record = await h.service.score(_input(seed=9))
    while record.arm != "primary" and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        record = await h.service.score(_input(seed=9))
    assert (record.arm, record.fallback_reason) == ("primary", "")
    assert state() == 0  # closed again


async def test_a_retry_goes_to_the_other_endpoint(
    harness: Callable[..., Harness], proxies: Callable[[], FaultProxy]
) -> None:
    down, up = proxies(), proxies()
    down.set("down")
    h = harness([down.address, up.address])
    records = [await h.service.score(_input(seed=s)) for s in range(6)]
    assert all(r.arm == "primary" and r.extra["endpoint"] == up.address for r in records)
    assert any(r.attempts == 2 for r in records)  # some started on the dead endpoint
    assert h.metric("scoregate_gateway_retries_total", decision_point="card-fraud") >= 1


async def test_the_retry_budget_caps_retries_during_an_outage(
    harness: Callable[..., Harness], proxies: Callable[[], FaultProxy]
) -> None:
    proxy = proxies()
    proxy.set("down")
    h = harness(
        [proxy.address], fallback=RULES_FALLBACK,
        retry={"num_retries": 1, "budget_percent": 10, "min_retries": 3, "backoff_ms": 0},
        circuit_breaker={"consecutive_failures": 100_000, "min_requests": 100_000},
    )  # fmt: skip
    requests = 200
    records = [await h.service.score(_input(seed=s % 7)) for s in range(requests)]
    assert all(r.fallback_reason == "unavailable" for r in records)
    retries = sum(r.attempts for r in records) - requests
    assert retries == h.metric("scoregate_gateway_retries_total", decision_point="card-fraud")
    # Without a budget an outage would double the load (200 retries); with 10% it is ~23.
    assert 3 <= retries <= 3 + 0.10 * requests + 1
    assert h.metric("scoregate_gateway_retries_denied_total", decision_point="card-fraud") > 150


async def test_a_hedge_returns_the_faster_answer_and_cancels_the_slow_call(
    harness: Callable[..., Harness], proxies: Callable[[], FaultProxy]
) -> None:
    slow, fast = proxies(), proxies()
    h = harness([slow.address, fast.address], hedge={"delay_ms": 20},
                retry={"budget_percent": 100})  # fmt: skip
    for s in range(4):  # warm both channels
        await h.service.score(_input(seed=s))
    # A warm-up call slower than the hedge delay (a busy machine) is hedged too: count from here.
    hedges_before = h.metric("scoregate_gateway_hedges_total", decision_point="card-fraud")
    slow.set("pass", delay_s=1.0)
    started = time.monotonic()
    records = [await h.service.score(_input(seed=s)) for s in range(6)]
    elapsed = time.monotonic() - started
    assert all(r.extra["endpoint"] == fast.address for r in records)
    hedged = [r for r in records if r.attempts == 2]
    assert hedged, "round robin starts some calls on the slow endpoint"
    assert elapsed < 1.0  # no answer waited for the slow endpoint's second
    hedges = h.metric("scoregate_gateway_hedges_total", decision_point="card-fraud")
    assert hedges - hedges_before == len(hedged)


async def test_a_hanging_shadow_neither_delays_nor_changes_the_answer(
    harness: Callable[..., Harness], proxies: Callable[[], FaultProxy]
) -> None:
    primary, shadow = proxies(), proxies()
    h = harness(
        [primary.address], [shadow.address],
        shadows=[{"target": {"model": "card-fraud", "version": "2"}}],
    )  # fmt: skip
    baseline = await h.service.score(_input(seed=12))
    await asyncio.sleep(0.2)  # its shadow lands
    shadow.set("hang")
    record = await h.service.score(_input(seed=12))
    # The answer came while the shadow call still hangs (its own 250 ms budget is running).
    assert h.service.shadows.in_flight == 1
    assert (record.score, record.decision, record.model_version, record.arm) == (
        baseline.score, baseline.decision, "1", "primary",
    )  # fmt: skip
    await h.service.shadows.drain(1.0)
    assert h.metric("scoregate_gateway_shadow_requests_total", decision_point="card-fraud",
                    model_version="2", outcome="failed") == 1  # fmt: skip


async def test_a_shadow_is_recorded_as_a_shadow_decision_linked_to_the_primary(
    harness: Callable[..., Harness], proxies: Callable[[], FaultProxy]
) -> None:
    primary, shadow = proxies(), proxies()
    h = harness(
        [primary.address], [shadow.address],
        shadows=[{"target": {"model": "card-fraud", "version": "2"}}],
    )  # fmt: skip
    record = await h.service.score(_input(seed=13))
    await h.service.shadows.drain(2.0)
    [mirror] = [r for r in h.records() if r.arm == "shadow"]
    assert mirror.extra[PARENT_DECISION_ID] == record.decision_id
    assert mirror.decision_id != record.decision_id
    assert (mirror.model_version, mirror.request_id, mirror.features) == (
        "2", record.request_id, record.features,
    )  # fmt: skip
    assert mirror.score != record.score  # another model really scored it


async def test_shadows_beyond_their_bound_are_dropped_not_queued(
    harness: Callable[..., Harness], proxies: Callable[[], FaultProxy]
) -> None:
    primary, shadow = proxies(), proxies()
    shadow.set("hang")
    h = harness(
        [primary.address], [shadow.address], shadow_max_in_flight=2,
        shadows=[{"target": {"model": "card-fraud", "version": "2"}}],
    )  # fmt: skip
    for s in range(5):
        await h.service.score(_input(seed=s))
    assert h.service.shadows.in_flight == 2
    assert h.metric("scoregate_gateway_shadow_requests_total", decision_point="card-fraud",
                    model_version="2", outcome="dropped") == 3  # fmt: skip
    await h.service.shadows.drain(0.0)


async def test_canary_entities_are_answered_by_the_canary_and_stick(
    harness: Callable[..., Harness], proxies: Callable[[], FaultProxy]
) -> None:
    proxy = proxies()
    canary = {"target": {"model": "card-fraud", "version": "2"}, "weight": 50}
    h = harness([proxy.address], canary=canary)
    arms = {}
    for i in range(40):
        record = await h.service.score(_input(seed=i % 3, entity=f"e-{i % 20}"))
        assert record.model_version == ("2" if record.arm == "canary" else "1")
        arms.setdefault(record.entity_key, set()).add(record.arm)
    assert all(len(a) == 1 for a in arms.values())  # sticky
    assert {"canary", "primary"} == set().union(*arms.values())
