"""Where decision records go once decided.

``SpanAttributeSink`` puts the record on the decision span as one JSON attribute and it leaves
with the span (OTLP, batched: it can be dropped). ``gateway.outbox.OutboxSink`` keeps it in the
durable outbox first; ``emit`` is async so the service answers only once the sink is done.
``emit_batch`` takes a ScoreBatch call's records at once, with the batch's one span.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import orjson
from opentelemetry.trace import Span
from opentelemetry.util.types import AttributeValue

from lineage.v1.record import DecisionRecord
from lineage.v1.spans import DECISION_ID_ATTRIBUTE, RECORD_ATTRIBUTE
from security.pseudonyms import KeyedHash


def redacted_attributes(record: DecisionRecord, pseudonyms: KeyedHash) -> dict[str, AttributeValue]:
    """What general tracing may see of a decision: ids, model, outcome and hashes.

    The caller's request id and the entity key appear only as keyed hashes: either may be a card
    or account number, and a tracing backend is no place for one. The same key gives the same
    hash on every gateway, so a trace can still be matched to a customer by whoever holds it.
    """
    return {
        DECISION_ID_ATTRIBUTE: record.decision_id,
        "scoregate.request_id_hmac": pseudonyms.pseudonym(record.request_id),
        "scoregate.entity_hmac": pseudonyms.pseudonym(record.entity_key),
        "scoregate.decision_point": record.decision_point,
        "scoregate.model.name": record.model_name,
        "scoregate.model.version": record.model_version,
        "scoregate.model.sha256": record.model_sha256,
        "scoregate.arm": record.arm,
        "scoregate.score": record.score,
        "scoregate.decision": record.decision,
        "scoregate.policy_version": record.policy_version,
        "scoregate.config_version": record.config_version,
        "scoregate.features_sha256": record.features_sha256,
        "scoregate.feature_schema_version": record.feature_schema_version,
        "scoregate.fallback_reason": record.fallback_reason,
        "scoregate.attempts": record.attempts,
    }


class DecisionSink(Protocol):
    records_on_spans: bool
    """True when records travel on their decision spans: the service then gives each record
    its own span, batches included (when it traces at all)."""

    def check_capacity(self) -> None:
        """Raises a GatewayError (e.g. OutboxFull) if a new record could not be taken now."""
        ...

    async def emit(self, record: DecisionRecord, span: Span) -> None:
        """Takes charge of ``record``; ``span`` is its (still open) decision span."""
        ...

    async def emit_batch(self, records: Sequence[DecisionRecord], span: Span) -> None:
        """Takes charge of a batch's records at once; ``span`` is the batch's (open) span."""
        ...


def record_json(record: DecisionRecord) -> str:
    """``lineage.v1.record.record_to_json``'s exact output, many times faster.

    orjson serialises the (slotted) dataclass natively instead of going through
    ``dataclasses.asdict``'s deep copy; a test holds the two outputs equal.
    """
    return orjson.dumps(record).decode()


class SpanAttributeSink:
    """Puts the record's JSON on the decision span; the span's exporter delivers it.

    With no recording span (no tracing configured) the record goes nowhere and costs nothing.
    """

    records_on_spans = True

    def check_capacity(self) -> None:
        return None

    async def emit(self, record: DecisionRecord, span: Span) -> None:
        if span.is_recording():
            span.set_attribute(RECORD_ATTRIBUTE, record_json(record))

    async def emit_batch(self, records: Sequence[DecisionRecord], span: Span) -> None:
        """Only ever given a non-recording span (see ``records_on_spans``): nothing to do."""
        if span.is_recording():
            raise ValueError("records ride on their own decision spans, not a batch span")
