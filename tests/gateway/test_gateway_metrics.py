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


def test_a_batchs_rows_are_counted_and_timed_each() -> None:
    metrics = GatewayMetrics()
    metrics.decided("credit-risk", "primary", "1", "review", 0.030, count=100)
    metrics.decided("credit-risk", "primary", "1", "review", 0.003)
    sample = metrics.registry.get_sample_value
    labels = {"decision_point": "credit-risk", "arm": "primary", "model_version": "1"}
    assert sample("scoregate_gateway_requests_total", {**labels, "outcome": "review"}) == 101
    assert sample("scoregate_gateway_request_latency_seconds_count", labels) == 101
    assert sample("scoregate_gateway_request_latency_seconds_sum", labels) == pytest.approx(3.003)
    assert (
        sample("scoregate_gateway_request_latency_seconds_bucket", {**labels, "le": "0.016"}) == 1
    )
    assert (
        sample("scoregate_gateway_request_latency_seconds_bucket", {**labels, "le": "0.032"}) == 101
    )
    assert (
        sample("scoregate_gateway_request_latency_seconds_bucket", {**labels, "le": "+Inf"}) == 101
    )
