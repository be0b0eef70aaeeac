"""Outbox records as an OTLP ExportTraceServiceRequest, built from the protobuf messages.

One span per record, named ``SPAN_NAME``, carrying the record's JSON (``RECORD_ATTRIBUTE``) and its
decision id, with the trace and span ids and the times the record itself holds: the lineage
store's receiver reads exactly what the gateway's span would have carried.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from governance.record import DECISION_ID_ATTRIBUTE, RECORD_ATTRIBUTE, SPAN_NAME

SERVICE_NAME = "scoregate-gateway"
SCOPE_NAME = "scoregate.gateway.outbox"


@dataclass(frozen=True, slots=True)
class OutgoingRecord:
    """What the sender needs of a durable payload, read once."""

    decision_id: str
    json: str
    trace_id: bytes
    span_id: bytes
    start_ns: int
    end_ns: int


def _ids(fields: dict[str, Any], decision_id: str) -> tuple[bytes, bytes]:
    try:
        trace_id = bytes.fromhex(str(fields.get("trace_id", "")))
        span_id = bytes.fromhex(str(fields.get("span_id", "")))
    except ValueError:
        trace_id = span_id = b""
    if len(trace_id) != 16 or len(span_id) != 8:
        # A record without usable span ids still travels: ids derived from its decision id.
        digest = hashlib.sha256(decision_id.encode()).digest()
        trace_id, span_id = digest[:16], digest[16:24]
    return trace_id, span_id


def outgoing(payload: bytes) -> OutgoingRecord:
    """Reads a payload's ids and times; the JSON itself is passed on unchanged."""
    text = payload.decode()
    fields = orjson.loads(payload)
    decision_id = str(fields.get("decision_id", ""))
    trace_id, span_id = _ids(fields, decision_id or str(uuid.uuid4()))
    start = int(fields.get("received_at_us", 0)) * 1000
    end = int(fields.get("decided_at_us", 0)) * 1000
    return OutgoingRecord(decision_id, text, trace_id, span_id, start, max(start, end))


def _attribute(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def export_request(records: Sequence[OutgoingRecord], instance: str) -> Any:
    resource = Resource(
        attributes=[
            _attribute("service.name", SERVICE_NAME),
            *([_attribute("service.instance.id", instance)] if instance else []),
        ]
    )
    spans = [
        Span(
            trace_id=r.trace_id,
            span_id=r.span_id,
            name=SPAN_NAME,
            kind=Span.SpanKind.SPAN_KIND_INTERNAL,
            start_time_unix_nano=r.start_ns,
            end_time_unix_nano=r.end_ns,
            attributes=[
                _attribute(RECORD_ATTRIBUTE, r.json),
                _attribute(DECISION_ID_ATTRIBUTE, r.decision_id),
            ],
        )
        for r in records
    ]
    scope = ScopeSpans(scope=InstrumentationScope(name=SCOPE_NAME), spans=spans)
    return ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(resource=resource, scope_spans=[scope])]
    )
