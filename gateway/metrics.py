"""The gateway's Prometheus metrics, on a registry of its own (no process-global state).

Labels stay bounded: decision points, arms, model versions and endpoints come from the routing
config, outcomes are a decision or a gRPC status name.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from gateway.attempts.breaker import STATE_VALUES

LATENCY_BUCKETS = (0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.0, 2.0)


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._decided: dict[tuple[str, str, str, str], tuple[Any, Any]] = {}
        r = self.registry
        self.requests = Counter(
            "scoregate_gateway_requests",
            "Score requests answered or refused, by decision point, arm, model version and outcome "
            "(approve/review/decline, or the gRPC status of a refusal).",
            ("decision_point", "arm", "model_version", "outcome"),
            registry=r,
        )
        self.latency = Histogram(
            "scoregate_gateway_request_latency_seconds",
            "Time from receiving a Score request to its decision.",
            ("decision_point", "arm", "model_version"),
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.fallbacks = Counter(
            "scoregate_gateway_fallbacks",
            "Decisions answered by the fallback chain, by reason.",
            ("decision_point", "reason"),
            registry=r,
        )
        self.fallback_reserve = Gauge(
            "scoregate_gateway_fallback_reserve_measured_seconds",
            "The time this gateway has been measured to need to decide, record and answer once "
            "the model is done with (1.5 x its recent p99); the fallback reserve is raised to it "
            "when it exceeds the configured reserve_ms.",
            registry=r,
        )
        self.retries = Counter(
            "scoregate_gateway_retries",
            "Retries sent to a runtime.",
            ("decision_point",),
            registry=r,
        )
        self.retries_denied = Counter(
            "scoregate_gateway_retries_denied",
            "Retries or hedges not sent because the retry budget was spent.",
            ("decision_point",),
            registry=r,
        )
        self.hedges = Counter(
            "scoregate_gateway_hedges",
            "Hedged (second, concurrent) attempts sent to a runtime.",
            ("decision_point",),
            registry=r,
        )
        self.shadows = Counter(
            "scoregate_gateway_shadow_requests",
            "Shadow (mirrored) requests by outcome: scored, failed, dropped (bound reached).",
            ("decision_point", "model_version", "outcome"),
            registry=r,
        )
        self.circuit_state = Gauge(
            "scoregate_gateway_circuit_state",
            "Circuit breaker state per runtime endpoint: 0 closed, 1 half-open, 2 open.",
            ("endpoint",),
            registry=r,
        )
        self.in_flight = Gauge(
            "scoregate_gateway_in_flight_requests",
            "Score requests admitted and not yet answered.",
            registry=r,
        )
        self.shed = Counter(
            "scoregate_gateway_shed_requests",
            "Requests refused with RESOURCE_EXHAUSTED at admission (in-flight bound reached).",
            registry=r,
        )
        self.runtime_call_rows = Histogram(
            "scoregate_gateway_runtime_call_rows",
            "Rows carried by each micro-batched runtime call (1: a Score call that went alone). "
            "Its mean is how much batching shares the runtime's per-call cost.",
            buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 128, 256),
            registry=r,
        )
        self.batch_rows_resent = Counter(
            "scoregate_gateway_batch_rows_resent",
            "Rows of micro-batches the runtime refused (INVALID_ARGUMENT, OUT_OF_RANGE), sent "
            "again alone so that only the rows it refuses fail.",
            registry=r,
        )
        self.loop_busy = Gauge(
            "scoregate_gateway_event_loop_busy_ratio",
            "Share of wall time the event loop spent running callbacks, smoothed over ~200 ms: "
            "near 1 the gateway's Python is saturated (gateway.loop_load).",
            registry=r,
        )
        self.batch_hold = Gauge(
            "scoregate_gateway_batch_hold",
            "1 while micro-batching holds queued rows for more (the loop is busy at least "
            "--batch-hold-busy), else 0.",
            registry=r,
        )
        self.config_reloads = Counter(
            "scoregate_gateway_config_reloads",
            "Routing config reloads by result (ok, failed).",
            ("result",),
            registry=r,
        )
        self.access_policy_reloads = Counter(
            "scoregate_gateway_access_policy_reloads",
            "Access policy reloads by result (ok, failed).",
            ("result",),
            registry=r,
        )
        self.access_refusals = Counter(
            "scoregate_gateway_access_refusals",
            "Calls refused at the edge, by status (UNAUTHENTICATED, PERMISSION_DENIED).",
            ("code",),
            registry=r,
        )
        self.unapproved_arms = Gauge(
            "scoregate_gateway_unapproved_arms",
            "Arms of the serving config that give a model version without a valid approval "
            "traffic, accepted under approvals: warn (or fail open).",
            registry=r,
        )
        self.config_info = Gauge(
            "scoregate_gateway_config_info",
            "The routing config version serving (value 1).",
            ("config_version",),
            registry=r,
        )

    def decided(
        self,
        point: str,
        arm: str,
        model_version: str,
        outcome: str,
        seconds: float,
        count: int = 1,
    ) -> None:
        """Counts ``count`` decisions that took ``seconds`` each (a batch's rows share one
        latency). The labelled children are kept per label set (bounded by the routing
        config): two ``labels()`` lookups per call were a visible share of a Score call's
        Python (docs/performance-log.md)."""
        key = (point, arm, model_version, outcome)
        children = self._decided.get(key)
        if children is None:
            children = (self.requests.labels(*key), self.latency.labels(point, arm, model_version))
            self._decided[key] = children
        children[0].inc(count)
        _observe_many(children[1], seconds, count)

    def circuit_changed(self, endpoint: str, state: str) -> None:
        self.circuit_state.labels(endpoint).set(STATE_VALUES[state])

    def config_applied(self, version: str) -> None:
        self.config_info.clear()
        self.config_info.labels(version).set(1)


def _observe_many(histogram: Any, amount: float, count: int) -> None:
    """``count`` observations of the same ``amount``: one bucket increment and one sum increment
    instead of ``count`` observe() calls (one per batch row, docs/performance-log.md), through
    prometheus_client's histogram internals where they are as expected (the tests check the
    scraped values either way)."""
    if count == 1:  # every Score call
        histogram.observe(amount)
        return
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None:
        for _ in range(count):
            histogram.observe(amount)
        return
    total.inc(amount * count)
    for i, bound in enumerate(bounds):
        if amount <= bound:
            buckets[i].inc(count)
            break
