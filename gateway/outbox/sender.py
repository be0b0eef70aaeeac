"""Ships durable records to the lineage store as OTLP spans until each is acknowledged.

One batch in flight at a time, in log order, so the acknowledgement cursor only moves forward.
An Export that answers OK is the store's acknowledgement: it answers only after its commit.

- Transient failures (UNAVAILABLE, DEADLINE_EXCEEDED, ... and any status that says the endpoint
  or its configuration is wrong) are retried for as long as it takes, with jittered exponential
  backoff: a store that is down for minutes loses nothing, the outbox just grows.
- ``partial_success`` rejections are acknowledged-but-rejected: the rejected records go to the
  dead-letter file (logged at ERROR) and are not retried. The store names up to a few rejected
  ids per answer; when it names fewer than it rejected, the unnamed records are resent one by one
  (the store is idempotent) so that each rejection is pinned on its record.
- A status that may be caused by one record (INVALID_ARGUMENT, INTERNAL, UNKNOWN, ...) repeated
  ``poison_attempts`` times splits the batch; a lone record that still gets it is dead-lettered,
  so a poison record never blocks the ones behind it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Sequence
from typing import Any

import grpc
import orjson
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceResponse,
)

from gateway.outbox.config import OutboxConfig
from gateway.outbox.durable_log import DurableLog
from gateway.outbox.metrics import OutboxMetrics
from gateway.outbox.otlp import as_span, encode_spans, named_rejections, span_record
from gateway.outbox.segments import Entry
from security.tls import ReopeningChannel

log = logging.getLogger(__name__)

# Statuses a single malformed or poisonous record can cause; everything else is the store's or
# the network's state, retried without limit.
RECORD_SPECIFIC = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DATA_LOSS,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.FAILED_PRECONDITION,
    }
)

EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"

CHANNEL_OPTIONS = (
    # A store coming back after an outage is found again within a second or two, not after
    # gRPC's default reconnect backoff (up to 120 s).
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
    ("grpc.max_send_message_length", 8 * 1024 * 1024),
)


class _Refused(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")


class Sender:
    def __init__(self, outbox: DurableLog, config: OutboxConfig, metrics: OutboxMetrics) -> None:
        self._outbox = outbox
        self._config = config
        self._metrics = metrics
        self._channel: ReopeningChannel | None = None
        self._export_on: Any = None
        self._export_call: Any = None
        self._failing_since: float | None = None
        self._failures = 0

    async def run(self) -> None:
        # Reopened when the gateway's client certificate is rotated: the store then sees the
        # new one from the next export on, without a restart.
        self._channel = ReopeningChannel(self._config.endpoint, self._config.tls, CHANNEL_OPTIONS)
        try:
            while True:
                try:
                    await self._send_next()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    # Never silently: the backlog grows (and sheds) until this is fixed.
                    log.exception("outbox sender failed; retrying from the cursor")
                    await asyncio.sleep(self._config.backoff_max_s)
        finally:
            await self._channel.close()

    def _export_now(self) -> Any:
        """The Export call on the channel in use, made again when that channel was reopened."""
        assert self._channel is not None
        channel = self._channel.channel
        if channel is not self._export_on:
            # The request goes as bytes, already encoded (``encode_export``).
            self._export_call = channel.unary_unary(
                EXPORT_METHOD, response_deserializer=ExportTraceServiceResponse.FromString
            )
            self._export_on = channel
        return self._export_call

    async def _send_next(self) -> None:
        config = self._config
        entries = await self._outbox.next_batch(config.batch_records, config.batch_bytes)
        if config.linger_s > 0 and len(entries) < config.batch_records:
            # A partial batch: let it grow a little (the records are durable meanwhile), then
            # read again from the cursor.
            await asyncio.sleep(config.linger_s)
            entries = await self._outbox.next_batch(config.batch_records, config.batch_bytes)
        spans: list[bytes] = []
        unreadable: list[bytes] = []
        for entry in entries:
            try:
                spans.append(as_span(entry.payload))
            except ValueError as e:
                unreadable.append(_dead_letter_line(entry.payload, f"unreadable payload: {e}"))
        if unreadable:
            log.error(
                "outbox: %d unreadable payloads moved to the dead-letter file", len(unreadable)
            )
            await self._outbox.dead_letter(unreadable)
        if spans:
            await self._deliver(spans)
        await self._acknowledge(entries)

    async def _acknowledge(self, entries: Sequence[Entry]) -> None:
        size = sum(e.size for e in entries)
        await self._outbox.acknowledge(entries[-1].end, len(entries), size)

    async def _deliver(self, spans: Sequence[bytes]) -> None:
        try:
            response = await self._export(spans)
        except _Refused as e:
            if len(spans) == 1:
                await self._dead_letter(spans, f"refused by the lineage store: {e}")
                return
            log.warning("outbox: batch of %d refused (%s); sending one by one", len(spans), e)
            for span in spans:
                await self._deliver([span])
            return
        rejected = response.partial_success.rejected_spans
        if rejected <= 0:
            return
        message = response.partial_success.error_message
        named = named_rejections(spans, message)
        if len(spans) == 1 or len(named) >= rejected:
            await self._dead_letter(named or spans, message)
            return
        # Fewer named than rejected: pin each rejection on its record by sending alone.
        for span in spans:
            if span not in named:
                await self._deliver([span])
        if named:
            await self._dead_letter(named, message)

    async def _export(self, spans: Sequence[bytes]) -> Any:
        config = self._config
        request = encode_spans(spans, config.instance)
        delay = config.backoff_initial_s
        suspicious = 0
        while True:
            try:
                response = await self._export_now()(request, timeout=config.export_timeout_s)
            except grpc.aio.AioRpcError as e:
                code = e.code()
                self._metrics.send_failures.labels(code.name).inc()
                self._note_failure(code, e.details() or "")
                if code in RECORD_SPECIFIC:
                    suspicious += 1
                    if suspicious >= config.poison_attempts:
                        raise _Refused(code, e.details() or "") from None
                await asyncio.sleep(delay * random.uniform(0.5, 1.5))
                delay = min(delay * 2, config.backoff_max_s)
                continue
            self._note_success()
            return response

    def _note_failure(self, code: grpc.StatusCode, details: str) -> None:
        self._failures += 1
        if self._failing_since is None:
            self._failing_since = time.monotonic()
            log.warning(
                "lineage store at %s: Export failed (%s: %s); retrying with backoff, "
                "records stay in the outbox",
                self._config.endpoint,
                code.name,
                details,
            )
        elif self._failures % 100 == 0:
            log.warning(
                "lineage store at %s still failing after %d attempts (%s); %d records waiting",
                self._config.endpoint,
                self._failures,
                code.name,
                self._outbox.unacked_records,
            )

    def _note_success(self) -> None:
        if self._failing_since is not None:
            log.warning(
                "lineage store at %s acknowledging again after %.1f s and %d failed attempts",
                self._config.endpoint,
                time.monotonic() - self._failing_since,
                self._failures,
            )
        self._failing_since = None
        self._failures = 0

    async def _dead_letter(self, spans: Sequence[bytes], reason: str) -> None:
        described = [span_record(s) for s in spans]
        for decision_id, _ in described:
            log.error(
                "lineage store rejected decision %s, moved to %s: %s",
                decision_id,
                self._outbox.directory / "dead-letter.jsonl",
                reason,
            )
        await self._outbox.dead_letter(
            [_dead_letter_line(payload, reason, decision_id) for decision_id, payload in described]
        )


def _dead_letter_line(payload: bytes, reason: str, decision_id: str = "") -> bytes:
    try:
        record: Any = orjson.Fragment(orjson.dumps(orjson.loads(payload)))
    except ValueError:
        record = payload.decode(errors="replace")
    return orjson.dumps(
        {
            "dead_lettered_at_us": time.time_ns() // 1000,
            "decision_id": decision_id,
            "reason": reason,
            "record": record,
        }
    )
