"""Appending: durable before it returns, fsyncs shared by concurrent appends, bounded."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Literal

import grpc
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from outbox_support import make_record

from gateway.errors import status_for
from gateway.outbox import (
    Outbox,
    OutboxClosed,
    OutboxConfig,
    OutboxFull,
    OutboxMetrics,
    OutboxSink,
    canonical_json,
)
from gateway.outbox.otlp import span_record
from lineage.v1.record import ReasonEntry, canonical_record_json


@pytest.mark.parametrize("sync", ["process", "loop", "thread"])
async def test_concurrent_appends_share_fsyncs(
    tmp_path: Path, sync: Literal["process", "loop", "thread"]
) -> None:
    metrics = OutboxMetrics()
    outbox = await Outbox.open(OutboxConfig(tmp_path, sync=sync), metrics)
    try:
        before = outbox.fsyncs
        records = [make_record() for _ in range(2000)]
        await asyncio.gather(*(outbox.append(r) for r in records))
        fsyncs = outbox.fsyncs - before
        assert outbox.unacked_records == 2000
        assert fsyncs <= 2000 / 10, f"{fsyncs} fsyncs for 2000 concurrent appends"
        assert metrics.registry.get_sample_value("scoregate_outbox_appends_total") == 2000
        assert metrics.registry.get_sample_value("scoregate_outbox_fsyncs_total") >= fsyncs
        assert metrics.registry.get_sample_value("scoregate_outbox_depth_records") == 2000

        one_at_a_time = outbox.fsyncs
        for record in records[:20]:
            await outbox.append(record)
        assert outbox.fsyncs - one_at_a_time == 20  # alone, each append pays its own sync
    finally:
        await outbox.close()
    reopened = await Outbox.open(OutboxConfig(tmp_path))
    try:
        entries = await reopened.next_batch(5000, 16 << 20)
        assert {span_record(e.payload)[1] for e in entries} == {canonical_json(r) for r in records}
        assert len(entries) == 2020
    finally:
        await reopened.close()


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {
            "reasons": (
                ReasonEntry(code="R2", description="second", rank=2),
                ReasonEntry(code="R1", description="first", rank=1),
            )
        },
        {"extra": {"z": "1", "a": "2"}, "fallback_reason": "runtime_unavailable"},
    ],
)
def test_canonical_json_is_the_store_canonical_form(overrides: dict[str, object]) -> None:
    record = make_record(**overrides)
    assert canonical_json(record) == canonical_record_json(record)


async def test_append_many_is_one_group_commit(tmp_path: Path) -> None:
    outbox = await Outbox.open(OutboxConfig(tmp_path))
    try:
        records = [make_record() for _ in range(100)]
        before = outbox.fsyncs
        await outbox.append_many(records)
        assert outbox.fsyncs - before == 1
        assert outbox.unacked_records == 100
        entries = await outbox.next_batch(500, 16 << 20)
        assert [span_record(e.payload)[1] for e in entries] == [canonical_json(r) for r in records]
    finally:
        await outbox.close()


async def test_append_many_over_the_bound_queues_nothing(tmp_path: Path) -> None:
    outbox = await Outbox.open(OutboxConfig(tmp_path, max_unacked_records=5))
    try:
        with pytest.raises(OutboxFull):
            await outbox.append_many([make_record() for _ in range(6)])
        assert outbox.unacked_records == 0
    finally:
        await outbox.close()


async def test_full_outbox_sheds_with_resource_exhausted(tmp_path: Path) -> None:
    metrics = OutboxMetrics()
    outbox = await Outbox.open(OutboxConfig(tmp_path, max_unacked_records=5), metrics)
    try:
        await asyncio.gather(*(outbox.append(make_record()) for _ in range(5)))
        with pytest.raises(OutboxFull) as refused:
            await outbox.append(make_record())
        assert status_for(refused.value).code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "5 records" in str(refused.value)
        assert outbox.unacked_records == 5  # nothing accepted was dropped to make room
        assert metrics.registry.get_sample_value("scoregate_outbox_shed_total") == 1
    finally:
        await outbox.close()
    small = await Outbox.open(OutboxConfig(tmp_path / "bytes", max_unacked_bytes=4000))
    try:
        with pytest.raises(OutboxFull):
            for _ in range(10):
                await small.append(make_record())
        assert 0 < small.unacked_bytes <= 4000
    finally:
        await small.close()


async def test_a_directory_has_one_owner(tmp_path: Path) -> None:
    outbox = await Outbox.open(OutboxConfig(tmp_path))
    try:
        with pytest.raises(OutboxClosed, match="in use"):
            await Outbox.open(OutboxConfig(tmp_path))
    finally:
        await outbox.close()
    with pytest.raises(OutboxClosed):
        await outbox.append(make_record())


async def test_sink_keeps_the_record_in_the_outbox_not_on_the_span(tmp_path: Path) -> None:
    """The record (features, entity key) goes to the outbox only; the span keeps just what the
    decision service put on it (its redacted attributes: tests/gateway/test_decision_service)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    outbox = await Outbox.open(OutboxConfig(tmp_path))
    try:
        record = make_record()
        span = provider.get_tracer("test").start_span("scoregate.decision")
        span.set_attribute("scoregate.decision.id", record.decision_id)
        await OutboxSink(outbox).emit(record, span)
        span.end()
        assert outbox.unacked_records == 1
        (entry,) = await outbox.next_batch(10, 1 << 20)
        assert span_record(entry.payload)[1] == canonical_json(record)
    finally:
        await outbox.close()
    (exported,) = exporter.get_finished_spans()
    assert dict(exported.attributes or {}) == {"scoregate.decision.id": record.decision_id}


def test_export_bytes_equal_the_protobuf_request() -> None:
    from gateway.outbox.otlp import OutgoingRecord, encode_export, export_request, outgoing

    records = [outgoing(canonical_json(make_record())) for _ in range(3)]
    odd = [
        OutgoingRecord("d-1", b"{}", b"", b"", 0, 0),  # no usable ids: the protobuf path
        OutgoingRecord("d-2", b"x" * 300_000, b"\x02" * 16, b"\x01" * 8, 0, 5),
    ]
    for batch in (records, odd, []):
        for instance in ("gw:1", ""):
            expected = export_request(batch, instance).SerializeToString()
            assert encode_export(batch, instance) == expected


def test_a_span_stored_at_append_is_the_span_sent_for_its_json() -> None:
    """What ``Outbox.append`` frames is byte for byte what the sender would encode from the
    record's JSON (a frame written by ``append_payload`` or before spans were stored)."""
    from gateway.outbox.otlp import as_span, encode_export, encode_spans, outgoing, record_span

    records = [make_record() for _ in range(4)]
    payloads = [canonical_json(r) for r in records]
    spans = [record_span(r, p) for r, p in zip(records, payloads, strict=True)]
    assert [as_span(p) for p in payloads] == spans
    assert [as_span(s) for s in spans] == spans
    assert [span_record(s) for s in spans] == [(r.decision_id, canonical_json(r)) for r in records]
    assert encode_spans(spans, "gw:1") == encode_export([outgoing(p) for p in payloads], "gw:1")
    assert span_record(b"\xff\xfe") == ("", b"\xff\xfe")


@pytest.mark.parametrize("sync", ["process", "loop", "thread"])
async def test_close_makes_pending_appends_durable(
    tmp_path: Path, sync: Literal["process", "loop", "thread"]
) -> None:
    """Appends handed to the writer but not yet synced when close begins are not lost."""
    outbox = await Outbox.open(OutboxConfig(tmp_path, sync=sync))
    records = [make_record() for _ in range(50)]
    appends = [asyncio.ensure_future(outbox.append(r)) for r in records]
    await asyncio.sleep(0)  # every append has run up to its wait for durability
    await outbox.close(0.1)
    await asyncio.gather(*appends)
    reopened = await Outbox.open(OutboxConfig(tmp_path))
    try:
        entries = await reopened.next_batch(100, 16 << 20)
        assert [span_record(e.payload)[1] for e in entries] == [canonical_json(r) for r in records]
    finally:
        await reopened.close()
