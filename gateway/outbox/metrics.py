"""The outbox's Prometheus metrics, on the registry it is given (the gateway's own).

Depth, bytes and oldest age are read from the outbox at scrape time, so appends pay nothing for
them.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

APPEND_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.25)


class OutboxMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.depth = Gauge(
            "scoregate_outbox_depth_records",
            "Decision records appended and not yet acknowledged by the lineage store.",
            registry=r,
        )
        self.bytes = Gauge(
            "scoregate_outbox_depth_bytes",
            "Framed bytes appended and not yet acknowledged by the lineage store.",
            registry=r,
        )
        self.oldest_age = Gauge(
            "scoregate_outbox_oldest_unacked_age_seconds",
            "Age of the oldest record the lineage store has not acknowledged (0 when none).",
            registry=r,
        )
        self.appends = Counter(
            "scoregate_outbox_appends", "Records made durable in the outbox.", registry=r
        )
        self.shed = Counter(
            "scoregate_outbox_shed",
            "Appends refused with RESOURCE_EXHAUSTED because the outbox bound was reached.",
            registry=r,
        )
        self.fsyncs = Counter(
            "scoregate_outbox_fsyncs",
            "fdatasync calls by the writer (appends / fsyncs = the group-commit factor).",
            registry=r,
        )
        self.append_latency = Histogram(
            "scoregate_outbox_append_latency_seconds",
            "Time an append waits until its record is durable.",
            buckets=APPEND_BUCKETS,
            registry=r,
        )
        self.acks = Counter(
            "scoregate_outbox_acks",
            "Records the lineage store acknowledged (stored, duplicate or rejected).",
            registry=r,
        )
        self.dead_lettered = Counter(
            "scoregate_outbox_dead_lettered",
            "Records the store rejected or that failed as poison, moved to the dead-letter file.",
            registry=r,
        )
        self.send_failures = Counter(
            "scoregate_outbox_send_failures",
            "Export calls to the lineage store that failed, by gRPC status.",
            ("code",),
            registry=r,
        )
        self.quarantined_bytes = Counter(
            "scoregate_outbox_quarantined_bytes",
            "Bytes cut from segments by recovery (torn tails, corruption) and kept in quarantine.",
            registry=r,
        )

    def observe(
        self, depth: Callable[[], float], size: Callable[[], float], age: Callable[[], float]
    ) -> None:
        self.depth.set_function(depth)
        self.bytes.set_function(size)
        self.oldest_age.set_function(age)
