"""The span contract between the gateway and the lineage store.

A decision travels as one OTLP span named ``SPAN_NAME`` whose string attribute
``RECORD_ATTRIBUTE`` holds the record's JSON and ``DECISION_ID_ATTRIBUTE`` its decision id. The
store reads every span it receives with ``decision_attributes``; the gateway's outbox reads its
own spans back with it and names a refused span as the store does (``span_ref``).
"""

from __future__ import annotations

from typing import Any

import orjson

SPAN_NAME = "scoregate.decision"
RECORD_ATTRIBUTE = "scoregate.decision.record"
DECISION_ID_ATTRIBUTE = "scoregate.decision.id"


def decision_attributes(span: Any) -> tuple[str | None, str | None]:
    """The record and decision id string attributes (the last of each; attributes of other
    types are not theirs)."""
    payload = decision_id = None
    for kv in span.attributes:
        key = kv.key
        if key == RECORD_ATTRIBUTE:
            if kv.value.WhichOneof("value") == "string_value":
                payload = kv.value.string_value
        elif key == DECISION_ID_ATTRIBUTE and kv.value.WhichOneof("value") == "string_value":
            decision_id = kv.value.string_value
    return payload, decision_id


def span_ref(span: Any) -> str:
    """The best name for a refused span: its decision id if any can be read, else its span id.
    The store names refusals with it and the outbox's sender matches them back the same way."""
    payload, decision_id = decision_attributes(span)
    if not decision_id:
        try:
            decision_id = orjson.loads(payload or "").get("decision_id")
        except (orjson.JSONDecodeError, AttributeError):
            decision_id = None
    if isinstance(decision_id, str) and decision_id:
        return decision_id
    return f"span {bytes(span.span_id).hex() or '?'}"
