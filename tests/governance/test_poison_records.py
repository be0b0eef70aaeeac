"""Poison records: a record the store can never store is rejected, naming why, and every record
around it is stored; the store does not answer UNAVAILABLE for it, on either backend (issue 20,
item 4). UNAVAILABLE stays the answer for a database that cannot be reached, which senders retry.

A NUL character is the case that stopped all delivery on PostgreSQL (its text cannot hold one);
integers outside 64 bits and non-finite scores are refused the same way on both backends.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Awaitable, Callable

import grpc
import orjson
import pytest
from lineage_support import MakeRecord, get_decision, postgres_database, raw_database
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from governance.errors import LineageError, StoreUnavailable
from governance.ingest import Ingestor
from governance.store import LineageStore, create_store
from governance.store.entries import DecisionFilter, Override
from lineage.v1.record import DecisionRecord, record_to_json
from lineage.v1.spans import DECISION_ID_ATTRIBUTE, RECORD_ATTRIBUTE, SPAN_NAME
from loadtests.local.topology import ManagedProcess

I64_MAX = 2**63 - 1


def _span(payload: str, decision_id: str) -> trace_pb2.Span:
    """A decision span as the gateway's outbox sends one: the record and its decision id."""
    attributes = [
        common_pb2.KeyValue(key=key, value=common_pb2.AnyValue(string_value=value))
        for key, value in ((RECORD_ATTRIBUTE, payload), (DECISION_ID_ATTRIBUTE, decision_id))
    ]
    return trace_pb2.Span(
        trace_id=os.urandom(16), span_id=os.urandom(8), name=SPAN_NAME, attributes=attributes
    )


def decision_span(record: DecisionRecord, **raw_fields: str) -> trace_pb2.Span:
    """The record's decision span, built directly (no gateway, no SDK); ``raw_fields`` replace
    fields with raw JSON text (NaN is no value a JSON encoder writes, but parsers accept it)."""
    fields = orjson.loads(record_to_json(record))
    for name in raw_fields:
        fields[name] = f"@{name}@"
    payload = orjson.dumps(fields).decode()
    for name, text in raw_fields.items():
        payload = payload.replace(f'"@{name}@"', text)
    return _span(payload, record.decision_id)


def export(
    address: str, spans: list[trace_pb2.Span]
) -> trace_service_pb2.ExportTraceServiceResponse:
    request = trace_service_pb2.ExportTraceServiceRequest(
        resource_spans=[trace_pb2.ResourceSpans(scope_spans=[trace_pb2.ScopeSpans(spans=spans)])]
    )
    with grpc.insecure_channel(address) as channel:
        return trace_service_pb2_grpc.TraceServiceStub(channel).Export(request, timeout=30)


def _poison(make_record: MakeRecord) -> dict[str, tuple[DecisionRecord, trace_pb2.Span]]:
    """Records no backend can store faithfully, with the word their rejection must carry."""
    nul_entity = make_record(entity_key="acct-\x0042")
    nul_request = make_record(request_id="req-\x00")
    received = make_record(received_at_us=I64_MAX + 1, decided_at_us=I64_MAX + 2)
    nan_score = make_record()
    return {
        "entity_key": (nul_entity, decision_span(nul_entity)),
        "request_id": (nul_request, decision_span(nul_request)),
        "received_at_us": (received, decision_span(received)),
        "score": (nan_score, decision_span(nan_score, score="NaN")),
    }


def test_poison_records_are_rejected_and_every_good_one_is_stored(
    lineage: ManagedProcess, make_record: MakeRecord
) -> None:
    good = [make_record() for _ in range(8)]
    poison = _poison(make_record)
    spans = [decision_span(r) for r in good[:2]]
    for n, (_, poison_span) in enumerate(poison.values()):
        spans += [poison_span, *(decision_span(r) for r in good[2 + n * 2 : 4 + n * 2])]

    reply = export(lineage.address, spans)  # not UNAVAILABLE, not INTERNAL: answered

    assert reply.partial_success.rejected_spans == len(poison)
    message = reply.partial_success.error_message
    for field, (record, _) in poison.items():
        assert f"{record.decision_id}: {field} " in message, message
    assert message.count("NUL") == 2 and "64-bit" in message and "finite" in message
    for record in good:
        got = get_decision(lineage.address, record.decision_id)
        assert (got.request_id, got.entity_key) == (record.request_id, record.entity_key)
    for record, _ in poison.values():
        with pytest.raises(grpc.RpcError) as info:
            get_decision(lineage.address, record.decision_id)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND

    # The store goes on answering, and a poison record sent alone is rejected alone.
    later = [make_record() for _ in range(3)]
    assert (
        export(lineage.address, [decision_span(r) for r in later]).partial_success.rejected_spans
        == 0
    )
    for _, poison_span in poison.values():
        assert export(lineage.address, [poison_span]).partial_success.rejected_spans == 1
    for record in later:
        assert get_decision(lineage.address, record.decision_id).decision_id == record.decision_id


def _unstorable_on(db_url: str, make_record: MakeRecord) -> DecisionRecord:
    """A record that passes no receiver and that the backend's database itself refuses:
    PostgreSQL's text cannot hold NUL; SQLite's integers stop at 64 bits."""
    if db_url.startswith("postgres"):
        return make_record(entity_key="acct-\x0042")
    return make_record(received_at_us=I64_MAX + 1, decided_at_us=I64_MAX + 2)


async def _open(db_url: str) -> LineageStore:
    store = create_store(db_url)
    await store.open()
    return store


async def test_the_database_refusing_a_value_is_a_permanent_error_not_unavailable(
    db_url: str, make_record: MakeRecord
) -> None:
    store = await _open(db_url)
    try:
        bad = _unstorable_on(db_url, make_record)
        with pytest.raises(LineageError) as info:
            await store.insert_many([make_record(), bad])
        assert not isinstance(info.value, StoreUnavailable)
        assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
        # Straight to the store, past the receiver's checks: the ingestor isolates the record.
        good = [make_record() for _ in range(7)]
        outcome = await Ingestor(store).ingest([*good[:3], bad, *good[3:]])
        assert outcome.stored == len(good)
        assert [r.ref for r in outcome.rejections] == [bad.decision_id]
        assert "cannot store" in outcome.rejections[0].reason
        for record in good:
            got = await store.get(record.decision_id)
            assert got is not None and got.record == record
        assert await store.get(bad.decision_id) is None
        report = await store.verify([])
        assert report.ok and report.checked == len(good), report.problem
    finally:
        await store.close()


async def test_other_calls_with_a_value_postgres_cannot_hold_are_invalid_not_unavailable(
    make_record: MakeRecord,
) -> None:
    with postgres_database() as url:
        store = await _open(url)
        try:
            record = make_record()
            await store.insert_many([record])
            override = Override(str(uuid.uuid4()), record.decision_id, "ana\x00", 1, "ok", "r")
            calls: list[Callable[[], Awaitable[object]]] = [
                lambda: store.list_decisions(DecisionFilter(0, 2**62, entity_key="acct-\x00"), 9),
                lambda: store.add_override(override),
            ]
            for call in calls:
                with pytest.raises(LineageError) as info:
                    await call()
                assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT, info.value
                assert "NUL" in str(info.value)
            got = await store.get(record.decision_id)
            assert got is not None and got.overrides == ()
        finally:
            await store.close()


async def test_a_lost_postgres_connection_stays_unavailable(make_record: MakeRecord) -> None:
    with postgres_database() as url:
        store = await _open(url)
        try:
            with raw_database(url) as db:
                db.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            with pytest.raises(StoreUnavailable):
                await store.insert_many([make_record()])
        finally:
            await store.close()
