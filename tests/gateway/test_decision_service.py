"""The core against the real runtime: one span per decision, carrying the decision record."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.decisions.ids import uuid7_unix_ms
from gateway.decisions.service import DecisionService, ScoreInput
from gateway.errors import (
    InvalidModelOutput,
    InvalidRequest,
    RuntimeDeadlineExceeded,
    UnknownDecisionPoint,
    UnknownModelVersion,
)
from gateway.recording.sinks import SpanAttributeSink, record_json
from gateway.routing.compiled import Routes, load_routes
from gateway.runtime_client.oip import OipModelClient
from gateway.transport.servicer import to_response
from lineage.v1.record import (
    DecisionRecord,
    ReasonEntry,
    features_sha256,
    record_from_json,
    record_to_json,
)
from lineage.v1.spans import DECISION_ID_ATTRIBUTE, RECORD_ATTRIBUTE, SPAN_NAME
from loadtests.local.topology import ManagedProcess
from runtimes.manifest import Manifest
from runtimes.training.datasets import sample_requests

Config = dict[str, Any]


@pytest.fixture(scope="module")
def routes(
    runtime: ManagedProcess,
    manifests: dict[tuple[str, str], Manifest],
    demo_config: Callable[[str], Config],
    write_routes: Callable[[Path, Config], Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Routes:
    path = write_routes(
        tmp_path_factory.mktemp("routes") / "routes.yaml", demo_config(runtime.address)
    )
    return load_routes(path, manifests)


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
async def service(routes: Routes, exporter: InMemorySpanExporter) -> AsyncIterator[DecisionService]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    client = OipModelClient(routes.targets)
    try:
        yield DecisionService(
            routes, client, provider.get_tracer("test"), SpanAttributeSink(), "test-host:1"
        )
    finally:
        await client.close()
        provider.shutdown()


def _input(point: str = "card-fraud", seed: int = 21, **changes: Any) -> ScoreInput:
    features = sample_requests(point, 1, seed=seed)[0]
    values = {"request_id": "req-1", "decision_point": point, "entity_key": "cust-9"}
    values.update(changes)
    return ScoreInput(features=features, **values)


async def test_one_span_per_decision_carries_the_record(
    service: DecisionService, exporter: InMemorySpanExporter, routes: Routes
) -> None:
    request = _input()
    record = await service.score(request)

    [span] = exporter.get_finished_spans()
    assert span.name == SPAN_NAME
    attributes = dict(span.attributes or {})
    stored = record_from_json(str(attributes[RECORD_ATTRIBUTE]))
    assert stored == record
    assert attributes[RECORD_ATTRIBUTE] == record_to_json(record)
    response = to_response(record)
    assert (response.decision_id, response.score, response.decision) == (
        stored.decision_id,
        stored.score,
        stored.decision,
    )
    assert (response.model_version, response.model_sha256, response.trace_id) == (
        stored.model_version,
        stored.model_sha256,
        stored.trace_id,
    )
    assert response.decided_at.ToMicroseconds() == stored.decided_at_us

    manifest = routes.decision_points["card-fraud"].primary.manifest
    assert (record.model_name, record.model_version) == ("card-fraud", "1")
    assert record.model_sha256 == manifest.artifact_sha256
    assert record.runtime_instance  # as the runtime reported it
    assert record.arm == "primary" and record.attempts == 1 and record.fallback_reason == ""
    assert record.config_version == routes.config_version
    assert record.gateway_instance == "test-host:1"
    assert record.feature_schema_version == manifest.feature_schema_version
    assert record.features_sha256 == features_sha256(record.features)
    assert record.features == {
        k: v if isinstance(v, bool | str) else float(v) for k, v in request.features.items()
    }
    assert record.decision == routes.decision_points["card-fraud"].policy.decide(record.score)
    assert record.policy_version == "card-fraud-policy-1"
    assert uuid7_unix_ms(record.decision_id) == record.received_at_us // 1000
    assert record.received_at_us <= record.decided_at_us

    context = span.get_span_context()
    assert context is not None
    assert record.trace_id == f"{context.trace_id:032x}"
    assert record.span_id == f"{context.span_id:016x}"
    assert span.start_time is not None and span.start_time // 1000 == record.received_at_us
    assert span.end_time is not None and span.end_time // 1000 == record.decided_at_us

    assert attributes[DECISION_ID_ATTRIBUTE] == record.decision_id
    assert attributes["scoregate.model.sha256"] == record.model_sha256
    assert attributes["scoregate.arm"] == "primary"
    assert attributes["scoregate.decision"] == record.decision
    # Feature values and the entity key travel only inside the record attribute.
    outside = {k: v for k, v in attributes.items() if k != RECORD_ATTRIBUTE}
    assert "cust-9" not in {str(v) for v in outside.values()}
    assert not set(request.features) & {k.rsplit(".", 1)[-1] for k in outside}


async def test_pinned_version_is_answered_by_that_version(
    service: DecisionService, routes: Routes
) -> None:
    record = await service.score(_input(model_version="2"))
    v2 = routes.decision_points["card-fraud"].versions["2"].manifest
    assert (record.model_version, record.arm, record.model_sha256) == (
        "2",
        "pinned",
        v2.artifact_sha256,
    )


@pytest.mark.parametrize(
    ("request_", "error", "named"),
    [
        (_input(model_version="9"), UnknownModelVersion, "model_version"),
        (_input(decision_point="mortgage"), UnknownDecisionPoint, "decision_point"),
        (_input(request_id=""), InvalidRequest, "request_id"),
        (_input(entity_key=""), InvalidRequest, "entity_key"),
    ],
    ids=["unknown-version", "unknown-point", "no-request-id", "no-entity"],
)
async def test_refused_requests_make_no_decision_span(
    service: DecisionService,
    exporter: InMemorySpanExporter,
    request_: ScoreInput,
    error: type[Exception],
    named: str,
) -> None:
    with pytest.raises(error, match=named):
        await service.score(request_)
    assert exporter.get_finished_spans() == ()


@pytest.fixture
async def hanging_runtime() -> AsyncIterator[str]:
    """An OIP v2 endpoint that accepts ModelInfer and never answers (a transport-level fake)."""
    never = asyncio.Event()

    async def model_infer(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        await never.wait()
        return b""

    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "inference.GRPCInferenceService",
                {"ModelInfer": grpc.unary_unary_rpc_method_handler(model_infer)},
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


@pytest.fixture
async def hanging_service(
    hanging_runtime: str,
    manifests: dict[tuple[str, str], Manifest],
    demo_config: Callable[[str], Config],
    write_routes: Callable[[Path, Config], Path],
    tmp_path: Path,
    exporter: InMemorySpanExporter,
) -> AsyncIterator[DecisionService]:
    path = write_routes(tmp_path / "routes.yaml", demo_config(hanging_runtime))
    routes = load_routes(path, manifests)
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    client = OipModelClient(routes.targets)
    try:
        yield DecisionService(routes, client, provider.get_tracer("t"), SpanAttributeSink(), "h")
    finally:
        await client.close()
        provider.shutdown()


@pytest.mark.parametrize(
    ("caller_s", "budget_s"), [(None, 0.25), (0.05, 0.05), (5.0, 0.25)], ids=str
)
async def test_the_model_call_gets_the_sooner_of_caller_deadline_and_route_timeout(
    hanging_service: DecisionService,
    exporter: InMemorySpanExporter,
    caller_s: float | None,
    budget_s: float,
) -> None:
    started = time.monotonic()
    with pytest.raises(RuntimeDeadlineExceeded, match=r"card-fraud-v1 at 127\.0\.0\.1:\d+ did"):
        await hanging_service.score(_input(), time_remaining_s=caller_s)
    elapsed = time.monotonic() - started
    assert budget_s <= elapsed < budget_s + 0.15
    assert exporter.get_finished_spans() == ()


async def test_a_deadline_already_passed_calls_no_model(service: DecisionService) -> None:
    with pytest.raises(RuntimeDeadlineExceeded, match="deadline passed"):
        await service.score(_input(), time_remaining_s=0.0)


async def test_a_runtime_reporting_another_artifact_gets_no_decision(
    routes: Routes, exporter: InMemorySpanExporter
) -> None:
    # The gateway's manifest claims another digest than the artifact the runtime loaded.
    point = routes.decision_points["card-fraud"]
    forged = point.primary.manifest.model_copy(update={"artifact_sha256": "0" * 64})
    target = type(point.primary)(
        point.primary.model, point.primary.version, point.primary.endpoints, forged
    )
    tampered = Routes(
        routes.config_version,
        {"card-fraud": type(point)(point.name, target, {}, point.timeout_s, point.policy)},
        (target,),
    )
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    client = OipModelClient(tampered.targets)
    service = DecisionService(tampered, client, provider.get_tracer("t"), SpanAttributeSink(), "h")
    try:
        with pytest.raises(InvalidModelOutput, match="sha256"):
            await service.score(_input())
    finally:
        await client.close()
        provider.shutdown()
    assert exporter.get_finished_spans() == ()


def test_the_fast_record_json_is_governances_record_json() -> None:
    record = DecisionRecord(
        decision_id="0192f3a4-0000-7000-8000-000000000000",
        request_id="r\u00e9q-\u2603",
        decision_point="card-fraud",
        entity_key="cust",
        received_at_us=1,
        decided_at_us=2,
        model_name="card-fraud",
        model_version="1",
        model_sha256="a" * 64,
        runtime_instance="h:1",
        arm="primary",
        config_version="c",
        fallback_reason="",
        attempts=1,
        features={"amount": 12.5, "channel": "pos", "card_present": True, "n": 1e-300},
        features_sha256="b" * 64,
        feature_schema_version="f",
        score=0.123456789012345,
        decision="approve",
        policy_version="p",
        trace_id="c" * 32,
        span_id="d" * 16,
        gateway_instance="g:2",
        reasons=(ReasonEntry(code="R01", description="high amount", rank=1),),
        reason_catalogue_version="rc-1",
        extra={"k": "v"},
    )
    assert record_json(record) == record_to_json(record)
