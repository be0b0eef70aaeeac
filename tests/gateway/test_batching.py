"""Micro-batching against the real runtime: the same scores as one at a time, bit for bit; a lone
request goes alone; max_size; ScoreBatch's one group commit under one span; the rows metric.

Batches are made deterministic by a fault proxy that slows the runtime: while one call is
outstanding, the calls behind it queue, and the counters say what went in which call. The
batching logic itself (queues, deadlines, failures, patience, the hold) is tested in process in
test_batching_in_process.py.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fault_proxy import FaultProxy
from opentelemetry.sdk.trace import TracerProvider

from gateway.deadline import Deadline
from gateway.decisions.service import DecisionService, ScoreInput
from gateway.outbox.otlp import span_record
from gateway.recording.records import BATCH_SIZE
from gateway.recording.sinks import SpanAttributeSink
from gateway.routing.compiled import Routes, load_routes
from gateway.runtime_client.batching import BatchingModelClient, BatchingPolicy
from gateway.runtime_client.oip import OipModelClient
from gateway.runtime_client.protocol import ModelAnswer
from gateway.runtime_client.targets import ModelTarget
from lineage.v1.record import FeatureScalar
from loadtests.local.topology import ManagedProcess
from runtimes.manifest import Manifest
from runtimes.training.datasets import sample_requests

Config = dict[str, Any]
ROWS = 48


@pytest.fixture
def proxy(runtime: ManagedProcess) -> Iterator[FaultProxy]:
    proxy = FaultProxy(runtime.address).start()
    yield proxy
    proxy.stop()


@pytest.fixture
def routes(
    proxy: FaultProxy,
    manifests: dict[tuple[str, str], Manifest],
    demo_config: Callable[[str], Config],
    write_routes: Callable[[Path, Config], Path],
    tmp_path: Path,
) -> Routes:
    return load_routes(
        write_routes(tmp_path / "routes.yaml", demo_config(proxy.address)), manifests
    )


@pytest.fixture
async def clients() -> AsyncIterator[Callable[..., BatchingModelClient]]:
    made: list[BatchingModelClient] = []

    def make(
        routes: Routes, load: Callable[[], float] | None = None, **policy: Any
    ) -> BatchingModelClient:
        # A long max wait: batches form only behind an outstanding call or at max_size.
        client = BatchingModelClient(
            OipModelClient(routes.targets),
            BatchingPolicy(**{"max_wait_s": 30.0, **policy}),
            load=load,
        )
        made.append(client)
        return client

    yield make
    for client in made:
        await client.close()


def _service(routes: Routes, client: BatchingModelClient) -> DecisionService:
    tracer = TracerProvider().get_tracer("t")
    return DecisionService(routes, client, tracer, SpanAttributeSink(), "test:1")


def _inputs(n: int) -> list[ScoreInput]:
    return [
        ScoreInput(f"req-{i}", "card-fraud", f"cust-{i}", features)
        for i, features in enumerate(sample_requests("card-fraud", n, seed=11))
    ]


def _snapshot(row: ScoreInput) -> dict[str, FeatureScalar]:
    return {k: float(v) if type(v) is int else v for k, v in row.features.items()}  # type: ignore[misc]


def _card_fraud(routes: Routes) -> ModelTarget:
    return routes.decision_points["card-fraud"].primary


def _send(
    client: BatchingModelClient, target: ModelTarget, rows: list[dict[str, FeatureScalar]], tag: str
) -> list[asyncio.Task[ModelAnswer]]:
    """Each row's call started at once, in order, on the target's first endpoint."""
    endpoint = target.endpoints[0]
    return [
        asyncio.create_task(client.infer(target, r, Deadline.after(5.0), f"{tag}{i}", endpoint))
        for i, r in enumerate(rows)
    ]


async def test_concurrent_requests_get_the_scores_sequential_ones_get_bit_for_bit(
    routes: Routes, clients: Callable[..., BatchingModelClient], proxy: FaultProxy
) -> None:
    rows = _inputs(ROWS)
    sequential_client = clients(routes)
    alone_service = _service(routes, sequential_client)
    sequential = [await alone_service.score(r) for r in rows]
    assert sequential_client.batch_sizes == Counter({1: ROWS})  # one at a time: all alone

    proxy.set("pass", delay_s=0.05)  # the first call stays outstanding while the rest queue
    concurrent_client = clients(routes)
    service = _service(routes, concurrent_client)
    concurrent = await asyncio.gather(*(service.score(r) for r in rows))
    assert concurrent_client.batch_sizes == Counter({1: 1, ROWS - 1: 1})

    for row, alone, batched in zip(rows, sequential, concurrent, strict=True):
        assert batched.request_id == alone.request_id == row.request_id
        assert batched.entity_key == row.entity_key
        assert batched.features == alone.features == _snapshot(row)
        assert batched.score == alone.score  # exact float equality, row by row
        assert batched.decision == alone.decision
        assert (batched.model_name, batched.model_version) == ("card-fraud", "1")
        assert batched.model_sha256 == alone.model_sha256
        assert alone.extra[BATCH_SIZE] == "1"
    assert Counter(r.extra[BATCH_SIZE] for r in concurrent) == {"1": 1, str(ROWS - 1): ROWS - 1}
    assert len({r.decision_id for r in concurrent}) == ROWS


async def test_a_lone_request_is_sent_alone_at_once(
    routes: Routes, clients: Callable[..., BatchingModelClient]
) -> None:
    client = clients(routes)  # max_wait 30 s: any waiting would show as a timeout here
    target = _card_fraud(routes)
    snapshot = _snapshot(_inputs(1)[0])
    answer = await asyncio.wait_for(
        client.infer(target, snapshot, Deadline.after(5.0), "lone", target.endpoints[0]), 5.0
    )
    assert answer.batch_size == 1
    assert client.batch_sizes == Counter({1: 1})


async def test_max_size_sends_a_full_batch_without_waiting_for_the_outstanding_call(
    routes: Routes, clients: Callable[..., BatchingModelClient], proxy: FaultProxy
) -> None:
    client = clients(routes, max_size=4)
    target = _card_fraud(routes)
    proxy.set("pass", delay_s=0.05)
    rows = [_snapshot(r) for r in _inputs(9)]
    answers = await asyncio.gather(
        *(
            client.infer(target, r, Deadline.after(5.0), f"r{i}", target.endpoints[0])
            for i, r in enumerate(rows)
        )
    )
    assert client.batch_sizes == Counter({1: 1, 4: 2})
    assert [a.batch_size for a in answers] == [1, 4, 4, 4, 4, 4, 4, 4, 4]


async def test_score_batch_through_the_outbox_is_one_group_commit_under_one_span(
    routes: Routes, clients: Callable[..., BatchingModelClient], tmp_path: Path
) -> None:
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from gateway.outbox import Outbox, OutboxConfig, OutboxSink, canonical_json
    from gateway.recording.recorder import BATCH_SPAN_NAME

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    outbox = await Outbox.open(OutboxConfig(tmp_path / "outbox"))
    try:
        service = DecisionService(
            routes, clients(routes), provider.get_tracer("t"), OutboxSink(outbox), "test:1"
        )
        rows = _inputs(ROWS)
        fsyncs = outbox.fsyncs
        results = await service.score_batch("card-fraud", rows)
        assert outbox.fsyncs - fsyncs == 1
        records = [r for r in results if not isinstance(r, Exception)]
        assert len(records) == ROWS
        (span,) = exporter.get_finished_spans()
        assert span.name == BATCH_SPAN_NAME
        assert span.attributes is not None and span.attributes["scoregate.batch.rows"] == ROWS
        assert not any("cust-" in str(v) for v in span.attributes.values())
        assert {r.trace_id for r in records} == {f"{span.context.trace_id:032x}"}
        assert len({r.span_id for r in records}) == ROWS
        entries = await outbox.next_batch(1000, 16 << 20)
        assert [span_record(e.payload)[1] for e in entries] == [canonical_json(r) for r in records]
    finally:
        await outbox.close()


async def test_without_a_tracer_records_still_get_valid_trace_ids(
    routes: Routes, clients: Callable[..., BatchingModelClient]
) -> None:
    service = DecisionService(routes, clients(routes), None, SpanAttributeSink(), "test:1")
    row = _inputs(1)[0]
    record = await service.score(row)
    (batched,) = await service.score_batch("card-fraud", [row])
    for r in (record, batched):
        assert not isinstance(r, Exception)
        assert len(r.trace_id) == 32 and int(r.trace_id, 16) != 0
        assert len(r.span_id) == 16 and int(r.span_id, 16) != 0


async def test_every_runtime_call_is_reported_with_its_rows(
    routes: Routes, proxy: FaultProxy
) -> None:
    """What scoregate_gateway_runtime_call_rows observes: one value per runtime call."""
    from gateway.metrics import GatewayMetrics

    metrics = GatewayMetrics()
    observed: list[int] = []

    def on_call(rows: int) -> None:
        observed.append(rows)
        metrics.runtime_call_rows.observe(rows)

    client = BatchingModelClient(
        OipModelClient(routes.targets), BatchingPolicy(max_wait_s=30.0), on_call
    )
    try:
        service = _service(routes, client)
        proxy.set("pass", delay_s=0.05)
        await asyncio.gather(*(service.score(r) for r in _inputs(5)))
    finally:
        await client.close()
    assert observed == [1, 4]
    registry = metrics.registry
    assert registry.get_sample_value("scoregate_gateway_runtime_call_rows_count") == 2
    assert registry.get_sample_value("scoregate_gateway_runtime_call_rows_sum") == 5
