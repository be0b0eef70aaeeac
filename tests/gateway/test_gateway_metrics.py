"""The gateway's per-decision metrics, as Prometheus scrapes them."""

from __future__ import annotations

import pytest

from gateway.metrics import GatewayMetrics


def test_each_answered_call_is_counted_and_timed_under_its_own_labels() -> None:
    metrics = GatewayMetrics()
    metrics.decided("card-fraud", "primary", "1", "approve", 0.003)
    metrics.decided("card-fraud", "primary", "1", "approve", 0.005)
    metrics.decided("card-fraud", "canary", "2", "decline", 0.020)
    sample = metrics.registry.get_sample_value
    primary = {"decision_point": "card-fraud", "arm": "primary", "model_version": "1"}
    assert sample("scoregate_gateway_requests_total", {**primary, "outcome": "approve"}) == 2
    assert sample("scoregate_gateway_request_latency_seconds_count", primary) == 2
    assert sample("scoregate_gateway_request_latency_seconds_sum", primary) == pytest.approx(0.008)
    assert (
        sample("scoregate_gateway_request_latency_seconds_bucket", {**primary, "le": "0.004"}) == 1
    )
    canary = {"decision_point": "card-fraud", "arm": "canary", "model_version": "2"}
    assert sample("scoregate_gateway_requests_total", {**canary, "outcome": "decline"}) == 1
    assert sample("scoregate_gateway_requests_total", {**canary, "outcome": "approve"}) is None
