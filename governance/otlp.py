"""Decision records out of an OTLP ExportTraceServiceRequest.

Only spans named ``SPAN_NAME`` are decisions; every other span is counted and ignored, so the
store can sit behind a collector pipeline that also carries ordinary traces.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import pydantic

from governance.errors import InvalidDecisionId
from governance.ids import canonical_decision_id
from governance.ingest import Rejection
from lineage.v1.record import DecisionRecord, record_from_json
from lineage.v1.spans import (
    DECISION_ID_ATTRIBUTE,
    RECORD_ATTRIBUTE,
    SPAN_NAME,
    decision_attributes,
    span_ref,
)


@dataclass(slots=True)
class ExtractedBatch:
    records: list[DecisionRecord] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    ignored_spans: int = 0


# A decision id already in canonical form (what uuid.UUID would print), checked without parsing.
_CANONICAL_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


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
