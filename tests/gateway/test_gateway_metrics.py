"""The gateway's per-decision metrics, as Prometheus scrapes them."""

from __future__ import annotations

import pytest

from gateway.metrics import GatewayMetrics

REQUESTS = "scoregate_gateway_requests_total"
LATENCY = "scoregate_gateway_request_latency_seconds"


def _labels(point: str, arm: str, version: str) -> dict[str, str]:
    return {"decision_point": point, "arm": arm, "model_version": version}


def _bucket(metrics: GatewayMetrics, labels: dict[str, str], le: str) -> float | None:
    return metrics.registry.get_sample_value(f"{LATENCY}_bucket", {**labels, "le": le})


def test_each_answered_call_is_counted_and_timed_under_its_own_labels() -> None:
    metrics = GatewayMetrics()
    metrics.decided("card-fraud", "primary", "1", "approve", 0.003)
    metrics.decided("card-fraud", "primary", "1", "approve", 0.005)
    metrics.decided("card-fraud", "canary", "2", "decline", 0.020)
    sample = metrics.registry.get_sample_value
    primary = _labels("card-fraud", "primary", "1")
    assert sample(REQUESTS, {**primary, "outcome": "approve"}) == 2
    assert sample(f"{LATENCY}_count", primary) == 2
    assert sample(f"{LATENCY}_sum", primary) == pytest.approx(0.008)
    assert _bucket(metrics, primary, "0.004") == 1
    canary = _labels("card-fraud", "canary", "2")
    assert sample(REQUESTS, {**canary, "outcome": "decline"}) == 1
    assert sample(REQUESTS, {**canary, "outcome": "approve"}) is None


def test_a_batchs_rows_are_counted_and_timed_each() -> None:
    metrics = GatewayMetrics()
    metrics.decided("credit-risk", "primary", "1", "review", 0.030, count=100)
    metrics.decided("credit-risk", "primary", "1", "review", 0.003)
    sample = metrics.registry.get_sample_value
    labels = _labels("credit-risk", "primary", "1")
    assert sample(REQUESTS, {**labels, "outcome": "review"}) == 101
    assert sample(f"{LATENCY}_count", labels) == 101
    assert sample(f"{LATENCY}_sum", labels) == pytest.approx(3.003)
    assert [_bucket(metrics, labels, le) for le in ("0.016", "0.032", "+Inf")] == [1, 101, 101]
