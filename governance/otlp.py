"""Decision records out of an OTLP ExportTraceServiceRequest.

Only spans named ``SPAN_NAME`` are decisions; every other span is counted and ignored, so the
store can sit behind a collector pipeline that also carries ordinary traces.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import orjson
import pydantic

from governance.errors import InvalidDecisionId
from governance.ids import canonical_decision_id
from governance.ingest import Rejection
from governance.record import (
    DECISION_ID_ATTRIBUTE,
    RECORD_ATTRIBUTE,
    SPAN_NAME,
    DecisionRecord,
    record_from_json,
)


@dataclass(slots=True)
class ExtractedBatch:
    records: list[DecisionRecord] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    ignored_spans: int = 0


# A decision id already in canonical form (what uuid.UUID would print), checked without parsing.
_CANONICAL_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def decision_attributes(span: Any) -> tuple[str | None, str | None]:
    """The record and decision id string attributes (the last of each; attributes of other
    types are not theirs). The store reads every span with it, the outbox its own spans back."""
    payload = decision_id = None
    for kv in span.attributes:
        key = kv.key
        if key == RECORD_ATTRIBUTE:
            if kv.value.WhichOneof("value") == "string_value":
                payload = kv.value.string_value
        elif key == DECISION_ID_ATTRIBUTE and kv.value.WhichOneof("value") == "string_value":
            decision_id = kv.value.string_value
    return payload, decision_id


def _validation_summary(error: pydantic.ValidationError, limit: int = 3) -> str:
    problems = [
        f"{'.'.join(str(part) for part in e['loc']) or 'record'}: {e['msg']}"
        for e in error.errors()[:limit]
    ]
    more = error.error_count() - limit
    return (
        "malformed record (" + "; ".join(problems) + (f"; +{more} more" if more > 0 else "") + ")"
    )


def _record_from_span(span: Any) -> DecisionRecord:
    """The span's record; raises ValueError with a reason a sender can act on."""
    payload, span_decision_id = decision_attributes(span)
    if payload is None:
        raise ValueError(f"decision span has no string attribute {RECORD_ATTRIBUTE!r}")
    try:
        record = record_from_json(payload)
    except pydantic.ValidationError as e:
        raise ValueError(_validation_summary(e)) from None
    if _CANONICAL_ID.fullmatch(record.decision_id) is None:
        try:
            canonical = canonical_decision_id(record.decision_id)
        except InvalidDecisionId as e:
            raise ValueError(str(e)) from None
        if canonical != record.decision_id:
            raise ValueError(
                f"decision_id {record.decision_id!r} is not in canonical lower-case form"
            )
    if span_decision_id is not None and span_decision_id != record.decision_id:
        raise ValueError(
            f"span attribute {DECISION_ID_ATTRIBUTE} {span_decision_id!r} differs from the "
            f"record's decision_id {record.decision_id!r}"
        )
    return record


def span_ref(span: Any) -> str:
    """The best name for a rejected span: its decision id if any can be read, else its span id.
    The outbox's sender applies the same rule to tell which of its spans a message names."""
    payload, decision_id = decision_attributes(span)
    if not decision_id:
        try:
            decision_id = orjson.loads(payload or "").get("decision_id")
        except (orjson.JSONDecodeError, AttributeError):
            decision_id = None
    if isinstance(decision_id, str) and decision_id:
        return decision_id
    return f"span {bytes(span.span_id).hex() or '?'}"


def extract_records(request: Any) -> ExtractedBatch:
    """Walks resource_spans/scope_spans/spans of an ExportTraceServiceRequest."""
    batch = ExtractedBatch()
    for resource_spans in request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                if span.name != SPAN_NAME:
                    batch.ignored_spans += 1
                    continue
                try:
                    batch.records.append(_record_from_span(span))
                except ValueError as e:
                    batch.rejections.append(Rejection(span_ref(span), str(e)))
    return batch
