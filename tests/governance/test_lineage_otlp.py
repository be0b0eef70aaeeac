"""The OTLP receiver, spoken to with the raw TraceService stub: what a sender is told back."""

from __future__ import annotations

import os

import grpc
import orjson
import pytest
from lineage_support import MakeRecord, get_decision
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from lineage.v1.record import DecisionRecord, record_to_json
from lineage.v1.spans import RECORD_ATTRIBUTE, SPAN_NAME
from loadtests.local.topology import ManagedProcess


def span(name: str, attributes: dict[str, str]) -> trace_pb2.Span:
    return trace_pb2.Span(
        trace_id=os.urandom(16),
        span_id=os.urandom(8),
        name=name,
        attributes=[
            common_pb2.KeyValue(key=k, value=common_pb2.AnyValue(string_value=v))
            for k, v in attributes.items()
        ],
    )


def decision_span(record: DecisionRecord) -> trace_pb2.Span:
    return span(SPAN_NAME, {RECORD_ATTRIBUTE: record_to_json(record)})


def export(
    address: str, spans: list[trace_pb2.Span]
) -> trace_service_pb2.ExportTraceServiceResponse:
    request = trace_service_pb2.ExportTraceServiceRequest(
        resource_spans=[trace_pb2.ResourceSpans(scope_spans=[trace_pb2.ScopeSpans(spans=spans)])]
    )
    with grpc.insecure_channel(address) as channel:
        return trace_service_pb2_grpc.TraceServiceStub(channel).Export(request, timeout=10)


def test_malformed_record_does_not_block_the_good_ones(
    lineage: ManagedProcess, make_record: MakeRecord
) -> None:
    good = [make_record(), make_record()]
    broken = orjson.loads(record_to_json(make_record()))
    del broken["model_sha256"]
    broken["score"] = "high"
    reply = export(
        lineage.address,
        [
            decision_span(good[0]),
            span(SPAN_NAME, {RECORD_ATTRIBUTE: orjson.dumps(broken).decode()}),
            span("http.request", {"http.method": "GET"}),
            decision_span(good[1]),
        ],
    )
    assert reply.partial_success.rejected_spans == 1
    message = reply.partial_success.error_message
    assert broken["decision_id"] in message
    assert "model_sha256" in message and "score" in message
    for record in good:
        assert get_decision(lineage.address, record.decision_id).outputs.score == record.score
    with pytest.raises(grpc.RpcError) as info:
        get_decision(lineage.address, broken["decision_id"])
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_decision_span_without_record_or_with_bad_json_is_rejected(
    lineage: ManagedProcess,
) -> None:
    reply = export(
        lineage.address,
        [span(SPAN_NAME, {}), span(SPAN_NAME, {RECORD_ATTRIBUTE: "{not json"})],
    )
    assert reply.partial_success.rejected_spans == 2
    assert RECORD_ATTRIBUTE in reply.partial_success.error_message


def test_non_canonical_decision_id_is_rejected(
    lineage: ManagedProcess, make_record: MakeRecord
) -> None:
    record = make_record()
    shouting = make_record(decision_id=record.decision_id.upper())
    reply = export(lineage.address, [decision_span(shouting)])
    assert reply.partial_success.rejected_spans == 1
    assert "canonical" in reply.partial_success.error_message


def test_same_id_with_different_content_keeps_the_first(
    lineage: ManagedProcess, make_record: MakeRecord
) -> None:
    original = make_record(score=0.25, decision="approve")
    assert export(lineage.address, [decision_span(original)]).partial_success.rejected_spans == 0
    forged = make_record(decision_id=original.decision_id, score=0.99, decision="decline")
    reply = export(lineage.address, [decision_span(forged)])
    assert reply.partial_success.rejected_spans == 1
    assert original.decision_id in reply.partial_success.error_message
    assert "different content" in reply.partial_success.error_message
    stored = get_decision(lineage.address, original.decision_id)
    assert (stored.outputs.score, stored.outputs.decision) == (0.25, "approve")


def test_clean_batch_reports_no_partial_success(
    lineage: ManagedProcess, make_record: MakeRecord
) -> None:
    reply = export(lineage.address, [decision_span(make_record()) for _ in range(50)])
    assert not reply.HasField("partial_success")
