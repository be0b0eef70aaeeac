"""Which spans a lineage store's rejection message names: the sender dead-letters those and
resends the others alone, so each dead letter carries its own span's reason."""

from __future__ import annotations

import orjson
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from outbox_support import make_record

from gateway.outbox import canonical_json
from gateway.outbox.otlp import as_span, encode_spans, named_rejections, record_span
from governance.ingest import MAX_NAMED_REJECTIONS, IngestOutcome
from governance.otlp import extract_records


def _store_message(spans: list[bytes]) -> tuple[int, str]:
    """What the lineage store's receiver answers for ``spans``: (rejected, error_message)."""
    batch = extract_records(ExportTraceServiceRequest.FromString(encode_spans(spans, "gw:1")))
    outcome = IngestOutcome(rejections=batch.rejections)
    return len(outcome.rejections), outcome.rejection_message()


def _non_canonical_span() -> bytes:
    record = make_record()
    record = make_record(decision_id=record.decision_id.upper())  # the store refuses it
    return record_span(record, canonical_json(record))


def _span_without_decision_id() -> bytes:
    """A bare-JSON record with no decision id, as an old segment might hold: its span's
    decision-id attribute is empty, so the store names it by its span id."""
    fields = orjson.loads(canonical_json(make_record()))
    del fields["decision_id"]
    return as_span(orjson.dumps(fields))


def test_a_span_without_a_decision_id_is_named_only_by_its_own_span_id() -> None:
    good = [record_span(r, canonical_json(r)) for r in (make_record() for _ in range(3))]
    bad = [_non_canonical_span() for _ in range(MAX_NAMED_REJECTIONS + 1)]
    unnamed = _span_without_decision_id()
    spans = [*good[:2], *bad, good[2], unnamed]

    rejected, message = _store_message(spans)

    # The store rejected seven and named the first five; the message has colons throughout.
    assert rejected == MAX_NAMED_REJECTIONS + 2
    assert message.endswith("; and 2 more")
    assert named_rejections(spans, message) == bad[:MAX_NAMED_REJECTIONS]
    # Sent alone, the id-less span is named by its span id, and is then the one named.
    alone_rejected, alone_message = _store_message([unnamed])
    assert alone_rejected == 1
    assert alone_message.startswith(f"span {Span.FromString(unnamed).span_id.hex()}: ")
    assert named_rejections([good[0], unnamed], alone_message) == [unnamed]


def test_a_span_that_does_not_parse_is_never_named() -> None:
    garbage = b"\xff\xfe\x00"
    record = make_record()
    good = record_span(record, canonical_json(record))
    assert named_rejections([garbage, good], "span ?: x; : y; anything: z") == []
