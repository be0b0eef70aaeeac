"""Recording decisions: each gets its trace context, then the sink takes charge of the records.

The span policy lives here, not in the orchestration. A decision of a Score call (and a shadow's)
gets its own span, ``SPAN_NAME``, whose ids go into the record; the record goes to the sink
before the span ends. A ScoreBatch group gets one span for the batch, its records sharing the
batch's trace id with a span id each, and goes to the sink at once (one outbox group commit) -
unless the sink carries records on their decision spans, when each row gets its own span after
all. With no tracer (no tracing backend configured) no SDK span is built at all: the records
still get W3C-valid trace and span ids, drawn at random.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence

from opentelemetry.trace import INVALID_SPAN, Span, Tracer

from gateway.errors import GatewayError
from gateway.recording.records import Decided, RowOutcome, build_record
from gateway.recording.sinks import DecisionSink, redacted_attributes
from lineage.v1.record import PARENT_DECISION_ID, DecisionRecord
from lineage.v1.spans import SPAN_NAME
from security.pseudonyms import KeyedHash

BATCH_SPAN_NAME = "scoregate.decision_batch"

Recorded = DecisionRecord | GatewayError
"""A row's record, or why the sink could not take it."""


def random_trace_id() -> str:
    """A W3C-valid trace id (32 hex digits, not all zero) for a decision with no SDK span."""
    return f"{random.getrandbits(128) or 1:032x}"


def random_span_id() -> str:
    """A W3C-valid span id (16 hex digits, not all zero)."""
    return f"{random.getrandbits(64) or 1:016x}"


class Recorder:
    def __init__(
        self,
        tracer: Tracer | None,
        sink: DecisionSink,
        instance: str,
        pseudonyms: KeyedHash | None = None,
    ) -> None:
        self._tracer = tracer
        # Without a configured key, one drawn now: nothing reversible leaves, though the hashes
        # then match nothing outside this process.
        self._pseudonyms = pseudonyms or KeyedHash.random()
        self._sink = sink
        self._instance = instance
        # Rows of a batch get their own spans only when the records travel on them.
        self._span_per_row = tracer is not None and sink.records_on_spans

    def check_capacity(self) -> None:
        """Raises a GatewayError (e.g. OutboxFull) if a new record could not be taken now."""
        self._sink.check_capacity()

    async def record(
        self, decided: Decided, rows: Sequence[RowOutcome], *, batch: bool
    ) -> list[Recorded]:
        """The rows' records, in order, once the sink has them (or each row's sink error)."""
        if not batch or self._span_per_row:
            if len(rows) == 1:
                return [await self._with_own_span(decided, rows[0])]
            return list(await asyncio.gather(*(self._with_own_span(decided, r) for r in rows)))
        try:
            return list(await self._with_batch_span(decided, rows))
        except GatewayError as e:
            return [e] * len(rows)

    async def _with_own_span(self, decided: Decided, row: RowOutcome) -> Recorded:
        decided_ns = time.time_ns()
        tracer = self._tracer
        span: Span
        if tracer is None:
            span = INVALID_SPAN
            trace_id, span_id = random_trace_id(), random_span_id()
        else:
            span = tracer.start_span(SPAN_NAME, start_time=decided.received_ns)
            context = span.get_span_context()
            trace_id, span_id = f"{context.trace_id:032x}", f"{context.span_id:016x}"
        record = build_record(decided, row, decided_ns, trace_id, span_id, self._instance)
        if span.is_recording():
            # Ids and outcome only: feature values and the entity key stay inside the record.
            span.set_attributes(redacted_attributes(record, self._pseudonyms))
            parent = record.extra.get(PARENT_DECISION_ID)
            if parent is not None:
                span.set_attribute("scoregate.parent_decision_id", parent)
        try:
            await self._sink.emit(record, span)
        except GatewayError as e:
            return e
        span.end(end_time=decided_ns)
        return record

    async def _with_batch_span(
        self, decided: Decided, rows: Sequence[RowOutcome]
    ) -> list[DecisionRecord]:
        decided_ns = time.time_ns()
        tracer = self._tracer
        span: Span = INVALID_SPAN
        if tracer is None:
            trace_id = random_trace_id()
        else:
            span = tracer.start_span(BATCH_SPAN_NAME, start_time=decided.received_ns)
            trace_id = f"{span.get_span_context().trace_id:032x}"
        instance = self._instance
        records = [
            build_record(decided, row, decided_ns, trace_id, random_span_id(), instance)
            for row in rows
        ]
        try:
            if span.is_recording():
                # What general tracing may see of a batch: no row's features or entity key.
                first = records[0]
                span.set_attributes(
                    {
                        "scoregate.decision_point": decided.decision_point,
                        "scoregate.model.name": first.model_name,
                        "scoregate.model.version": first.model_version,
                        "scoregate.model.sha256": first.model_sha256,
                        "scoregate.arm": decided.arm,
                        "scoregate.config_version": decided.config_version,
                        "scoregate.fallback_reason": decided.fallback_reason,
                        "scoregate.attempts": decided.attempts,
                        "scoregate.batch.rows": len(records),
                        "scoregate.batch.first_decision_id": first.decision_id,
                    }
                )
            await self._sink.emit_batch(records, span)
        finally:
            span.end(end_time=decided_ns)
        return records
