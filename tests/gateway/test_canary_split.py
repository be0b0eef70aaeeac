"""Sticky canary splits: the share matches the weight, entities stick, ramps only move forward."""

from __future__ import annotations

import math

import pytest

from gateway.routing import splits as canary

ENTITIES = [f"cust-{i:06d}" for i in range(20_000)]


def _on(weight: float, salt: str = "card-fraud") -> set[str]:
    buckets = canary.threshold(weight)
    return {e for e in ENTITIES if canary.on_split(salt, e, buckets)}


@pytest.mark.parametrize("weight", [1.0, 5.0, 25.0, 50.0, 90.0])
def test_the_canary_share_over_20k_entities_is_the_weight_within_a_binomial_bound(
    weight: float,
) -> None:
    n, p = len(ENTITIES), weight / 100
    share = len(_on(weight))
    # Four standard deviations: a correct hash fails this about once in 16,000 runs.
    assert abs(share - n * p) <= 4 * math.sqrt(n * p * (1 - p)), (share, n * p)


def test_weights_0_and_100_send_nobody_and_everybody() -> None:
    assert _on(0.0) == set()
    assert _on(100.0) == set(ENTITIES)


def test_an_entity_always_lands_on_the_same_arm_while_the_weight_stays() -> None:
    buckets = canary.threshold(25.0)
    first = [canary.on_split("card-fraud", e, buckets) for e in ENTITIES[:2000]]
    for _ in range(3):
        assert [canary.on_split("card-fraud", e, buckets) for e in ENTITIES[:2000]] == first


def test_a_ramp_5_25_50_100_only_moves_entities_from_primary_to_canary() -> None:
    previous: set[str] = set()
    for weight in (5.0, 25.0, 50.0, 100.0):
        current = _on(weight)
        assert previous <= current, f"{len(previous - current)} entities went back at {weight}%"
        previous = current
    assert previous == set(ENTITIES)


def test_decision_points_split_independently() -> None:
    fraud, credit = _on(50.0, "card-fraud"), _on(50.0, "credit-risk")
    overlap = len(fraud & credit) / len(ENTITIES)
    assert 0.23 < overlap < 0.27  # independent halves overlap by a quarter


def test_two_decimals_of_weight_count() -> None:
    assert canary.threshold(0.25) == 25
    assert canary.threshold(12.34) == 1234
