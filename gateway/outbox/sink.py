"""The decision sink that waits for durability, and the redacted decision span.

``OutboxSink.emit`` returns once the record is in the outbox (so the caller is answered only
then); the decision span, which goes to general tracing, keeps ids, model, outcome and hashes,
never the feature values or the entity key.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.trace import Span

from gateway.outbox.outbox import Outbox
from lineage.v1.record import DecisionRecord


class OutboxSink:
    """``DecisionSink`` (async variant): the record goes to the durable outbox, not the span."""

    records_on_spans = False

    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox

    def check_capacity(self) -> None:
        """Raises OutboxFull before a request is scored if its record could not be kept."""
        self._outbox.check_capacity()

    async def emit(self, record: DecisionRecord, span: Span) -> None:
        # The span already has the record's redacted attributes (DecisionService sets them).
        await self._outbox.append(record)

    async def emit_batch(self, records: Sequence[DecisionRecord], span: Span) -> None:
        """One append group for the batch: every record framed and queued, one wait."""
        await self._outbox.append_many(records)
