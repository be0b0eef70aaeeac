"""Outbox records as an OTLP ExportTraceServiceRequest.

``record_span`` encodes a record's decision span when it is appended, from the record's own
fields: that is what an outbox frame holds, so the sender only concatenates spans
(``encode_spans``) and never parses a record. A frame holding the bare JSON (``append_payload``,
segments written before spans were stored) is encoded on the way out (``as_span``).
``encode_export`` writes a request's bytes directly: the resource and scope are encoded once, and
each span is a join of its fields' encodings around the JSON, much cheaper than building protobuf
messages (docs/performance-log.md). ``export_request`` builds the same request from the protobuf
messages; a test holds the two byte-for-byte equal.

One span per record, named ``SPAN_NAME``, carrying the record's JSON (``RECORD_ATTRIBUTE``) and its
decision id, with the trace and span ids and the times the record itself holds: the lineage
store's receiver reads exactly what the gateway's span would have carried.
"""

from __future__ import annotations

import functools
import hashlib
import struct
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from gateway.wire import varint
from lineage.v1.record import DecisionRecord
from lineage.v1.spans import (
    DECISION_ID_ATTRIBUTE,
    RECORD_ATTRIBUTE,
    SPAN_NAME,
    decision_attributes,
    span_ref,
)

SERVICE_NAME = "scoregate-gateway"
SCOPE_NAME = "scoregate.gateway.outbox"


@dataclass(slots=True)  # one per record sent, never kept: a plain dataclass inits faster
class OutgoingRecord:
    """What the sender needs of a durable payload, read once."""

    decision_id: str
    payload: bytes
    """The record's JSON, as stored (UTF-8: ``orjson.loads`` checked it)."""
    trace_id: bytes
    span_id: bytes
    start_ns: int
    end_ns: int


def _ids(trace_hex: str, span_hex: str, decision_id: str) -> tuple[bytes, bytes]:
    try:
        trace_id = bytes.fromhex(trace_hex)
        span_id = bytes.fromhex(span_hex)
    except ValueError:
        trace_id = span_id = b""
    if len(trace_id) != 16 or len(span_id) != 8:
        # A record without usable span ids still travels: ids derived from its decision id.
        digest = hashlib.sha256(decision_id.encode()).digest()
        trace_id, span_id = digest[:16], digest[16:24]
    return trace_id, span_id


def outgoing(payload: bytes) -> OutgoingRecord:
    """Reads a payload's ids and times; the JSON itself is passed on unchanged."""
    fields = orjson.loads(payload)
    decision_id = str(fields.get("decision_id", ""))
    trace_id, span_id = _ids(
        str(fields.get("trace_id", "")),
        str(fields.get("span_id", "")),
        decision_id or str(uuid.uuid4()),
    )
    start = int(fields.get("received_at_us", 0)) * 1000
    end = int(fields.get("decided_at_us", 0)) * 1000
    return OutgoingRecord(decision_id, payload, trace_id, span_id, start, max(start, end))


def record_span(record: DecisionRecord, payload: bytes) -> bytes:
    """``record``'s decision span, encoded, around ``payload`` (its canonical JSON): the bytes
    ``_span_bytes(outgoing(payload))`` gives, without parsing the JSON."""
    trace_id, span_id = _ids(record.trace_id, record.span_id, record.decision_id)
    start = record.received_at_us * 1000
    end = max(start, record.decided_at_us * 1000)
    return _encode_span(record.decision_id, payload, trace_id, span_id, start, end)


def as_span(payload: bytes) -> bytes:
    """A frame's payload as the span to send. Raises ValueError for a JSON payload that does not
    parse; a span is passed on as it is (its frame's crc vouches for it)."""
    if payload[:1] == b"{":
        return _span_bytes(outgoing(payload))
    return payload


def span_record(span: bytes) -> tuple[str, bytes]:
    """The decision id and the record JSON an encoded decision span carries (for dead letters
    and rejections: the rare paths); ``("", span)`` if it does not parse."""
    try:
        record, decision_id = decision_attributes(Span.FromString(span))
    except DecodeError:
        return "", span
    return decision_id or "", (record or "").encode()


def named_rejections(spans: Sequence[bytes], message: str) -> list[bytes]:
    """The spans a lineage store's rejection message names. The store names each rejected span
    ``<ref>: <reason>`` (``governance.otlp.span_ref``: its decision id, else its record's, else
    ``span <span id>``); a span is named only by its own ref, so one without a decision id is
    not taken for rejected because the message holds a colon. A span that does not parse has
    no ref and is never named (sent alone, its rejection is its own)."""
    named = []
    for span in spans:
        try:
            ref = span_ref(Span.FromString(span))
        except DecodeError:
            continue
        if f"{ref}: " in message:
            named.append(span)
    return named


def _attribute(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _span(r: OutgoingRecord) -> Any:
    """The record's decision span as a protobuf message (``_span_bytes`` writes the same bytes
    directly when the ids have their usual lengths)."""
    return Span(
        trace_id=r.trace_id,
        span_id=r.span_id,
        name=SPAN_NAME,
        kind=Span.SpanKind.SPAN_KIND_INTERNAL,
        start_time_unix_nano=r.start_ns,
        end_time_unix_nano=r.end_ns,
        attributes=[
            _attribute(RECORD_ATTRIBUTE, r.payload.decode()),
            _attribute(DECISION_ID_ATTRIBUTE, r.decision_id),
        ],
    )


def export_request(records: Sequence[OutgoingRecord], instance: str) -> Any:
    resource = Resource(
        attributes=[
            _attribute("service.name", SERVICE_NAME),
            *([_attribute("service.instance.id", instance)] if instance else []),
        ]
    )
    spans = [_span(r) for r in records]
    scope = ScopeSpans(scope=InstrumentationScope(name=SCOPE_NAME), spans=spans)
    return ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(resource=resource, scope_spans=[scope])]
    )


def _len_field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field whose tag byte is ``tag``."""
    return tag + varint(len(payload)) + payload


def _attribute_parts(key: bytes, value: bytes) -> list[bytes]:
    """Span.attributes (9) entry: KeyValue{key: 1, value: 2 AnyValue{string_value: 1}}, as
    pieces to join (the value is not copied into intermediate buffers)."""
    value_len = varint(len(value))
    any_len = 1 + len(value_len) + len(value)
    any_prefix = varint(any_len)
    kv_len = len(key) + 1 + len(any_prefix) + any_len
    return [b"\x4a", varint(kv_len), key, b"\x12", any_prefix, b"\x0a", value_len, value]


# Span fields, in field-number order (the order protobuf serialises them in).
_TRACE_ID = b"\x0a\x10"  # 1: bytes, 16 long
_SPAN_ID = b"\x12\x08"  # 2: bytes, 8 long
_NAME_AND_KIND = (
    _len_field(b"\x2a", SPAN_NAME.encode()) + b"\x30" + varint(Span.SpanKind.SPAN_KIND_INTERNAL)
)  # 5: name, 6: kind
_START = b"\x39"  # 7: fixed64
_END = b"\x41"  # 8: fixed64
_RECORD_KEY = _len_field(b"\x0a", RECORD_ATTRIBUTE.encode())
_DECISION_ID_KEY = _len_field(b"\x0a", DECISION_ID_ATTRIBUTE.encode())
_U64 = struct.Struct("<Q")


def _span_bytes(r: OutgoingRecord) -> bytes:
    if len(r.trace_id) != 16 or len(r.span_id) != 8:
        return bytes(_span(r).SerializeToString())
    return _encode_span(r.decision_id, r.payload, r.trace_id, r.span_id, r.start_ns, r.end_ns)


def _encode_span(
    decision_id: str, payload: bytes, trace_id: bytes, span_id: bytes, start_ns: int, end_ns: int
) -> bytes:
    """The span's bytes for ids of the usual lengths (16 and 8), field by field."""
    parts = [_TRACE_ID, trace_id, _SPAN_ID, span_id, _NAME_AND_KIND]
    if start_ns:
        parts += (_START, _U64.pack(start_ns))
    if end_ns:
        parts += (_END, _U64.pack(end_ns))
    parts += _attribute_parts(_RECORD_KEY, payload)
    parts += _attribute_parts(_DECISION_ID_KEY, decision_id.encode())
    return b"".join(parts)


@functools.lru_cache(maxsize=8)
def _resource_and_scope(instance: str) -> tuple[bytes, bytes]:
    request = export_request([], instance)
    resource_spans = request.resource_spans[0]
    return (
        bytes(resource_spans.resource.SerializeToString()),
        bytes(resource_spans.scope_spans[0].scope.SerializeToString()),
    )


def encode_export(records: Sequence[OutgoingRecord], instance: str) -> bytes:
    """``export_request(records, instance).SerializeToString()``, written directly."""
    return encode_spans([_span_bytes(r) for r in records], instance)


def encode_spans(spans: Sequence[bytes], instance: str) -> bytes:
    """An ExportTraceServiceRequest's bytes around encoded spans.

    One join, so each span is copied once: the lengths of the enclosing messages are summed
    first. Nesting by concatenation copied the whole request at every level, each time into a
    fresh buffer of up to ~1 MiB that the kernel faulted in, a visible share of the gateway's
    event loop in a ScoreBatch profile (docs/performance-log.md)."""
    resource, scope = _resource_and_scope(instance)
    parts: list[bytes] = []
    body_len = 0
    for span in spans:  # ScopeSpans.spans = 2
        prefix = b"\x12" + varint(len(span))
        parts += (prefix, span)
        body_len += len(prefix) + len(span)
    scope_field = _len_field(b"\x0a", scope)  # ScopeSpans.scope = 1
    scope_spans_len = len(scope_field) + body_len
    # ResourceSpans: resource = 1, scope_spans = 2; the request: resource_spans = 1.
    resource_field = _len_field(b"\x0a", resource)
    scope_spans_prefix = b"\x12" + varint(scope_spans_len)
    resource_spans_len = len(resource_field) + len(scope_spans_prefix) + scope_spans_len
    head = [b"\x0a", varint(resource_spans_len), resource_field, scope_spans_prefix, scope_field]
    return b"".join(head + parts)
