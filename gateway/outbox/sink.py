"""The decision sink that waits for durability, and the redacted decision span.

``OutboxSink.emit`` returns once the record is in the outbox (so the caller is answered only
then); the decision span, which goes to general tracing, keeps ids, model, outcome and hashes,
never the feature values or the entity key.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.trace import Span
from opentelemetry.util.types import AttributeValue

from gateway.outbox.outbox import Outbox
from governance.record import DECISION_ID_ATTRIBUTE, DecisionRecord


def redacted_attributes(record: DecisionRecord) -> dict[str, AttributeValue]:
    """What general tracing may see of a decision: ids, model, outcome and hashes."""
    return {
        DECISION_ID_ATTRIBUTE: record.decision_id,
        "scoregate.request_id": record.request_id,
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


def set_redacted_attributes(span: Span, record: DecisionRecord) -> None:
    span.set_attributes(redacted_attributes(record))


class OutboxSink:
    """``DecisionSink`` (async variant): the record goes to the durable outbox, not the span."""

    records_on_spans = False

    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox

    def check_capacity(self) -> None:
        """Raises OutboxFull before a request is scored if its record could not be kept."""
        self._outbox.check_capacity()

    async def emit(self, record: DecisionRecord, span: Span) -> None:
        if span.is_recording():
            set_redacted_attributes(span, record)
        await self._outbox.append(record)

    async def emit_batch(self, records: Sequence[DecisionRecord], span: Span) -> None:
        """One append group for the batch: every record framed and queued, one wait."""
        await self._outbox.append_many(records)
