"""Decision records out of an OTLP ExportTraceServiceRequest.

Only spans named ``SPAN_NAME`` are decisions; every other span is counted and ignored, so the
store can sit behind a collector pipeline that also carries ordinary traces.

A record is also rejected, with the field named, when it holds what no backend can store
faithfully (``unstorable_field``): a NUL character in any text (PostgreSQL's text cannot hold
one), an integer outside 64 bits, a number that is not finite (its canonical JSON would hold
``null``, which does not parse back). Both backends thus refuse the same records, before the
database is asked; a value the database refuses all the same is isolated by the ingestor.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields
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


_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1
_TEXT_FIELDS = tuple(f.name for f in fields(DecisionRecord) if f.type in ("str", str))


def _nul_in(record: DecisionRecord) -> str | None:
    """The first text of ``record`` that holds a NUL character, named as a field."""
    for name in _TEXT_FIELDS:
        if "\x00" in getattr(record, name):
            return name
    for name, mapping in (("features", record.features), ("extra", record.extra)):
        for key, value in mapping.items():
            if "\x00" in key:
                return f"{name} key {key!r}"
            if isinstance(value, str) and "\x00" in value:
                return f"{name}[{key!r}]"
    for n, reason in enumerate(record.reasons):
        if "\x00" in reason.code or "\x00" in reason.description:
            return f"reasons[{n}]"
    return None


def _out_of_range(record: DecisionRecord) -> str | None:
    """The first integer of ``record`` outside 64 bits, named as a field."""
    for name, value in (
        ("received_at_us", record.received_at_us),
        ("decided_at_us", record.decided_at_us),
        ("attempts", record.attempts),
    ):
        if not _I64_MIN <= value <= _I64_MAX:
            return f"{name} {value} is outside the signed 64-bit range"
    for n, reason in enumerate(record.reasons):
        if not _I64_MIN <= reason.rank <= _I64_MAX:
            return f"reasons[{n}].rank {reason.rank} is outside the signed 64-bit range"
    return None


def unstorable_field(record: DecisionRecord, payload: str) -> str | None:
    """Why no backend can store ``record`` as it came (``payload``, its JSON), starting with
    the field's name; None for every record a sender can be expected to send. The common case
    costs about a microsecond (a search of the payload, a few comparisons and a pass over the
    features)."""
    # In JSON a NUL can only be escaped (the parser refuses raw control characters); the record
    # is searched too, since "\\u0000" may follow an escaped backslash and be no NUL.
    if "\\u0000" in payload:
        where = _nul_in(record)
        if where is not None:
            return f"{where} contains a NUL character (U+0000), which stored text cannot hold"
    out_of_range = _out_of_range(record)
    if out_of_range is not None:
        return out_of_range
    if not math.isfinite(record.score):
        return f"score {record.score} is not a finite number"
    for key, value in record.features.items():
        if value.__class__ is float and not math.isfinite(value):
            return f"features[{key!r}] {value} is not a finite number"
    return None


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
    unstorable = unstorable_field(record, payload)
    if unstorable is not None:
        raise ValueError(unstorable)
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
