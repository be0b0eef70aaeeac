"""Scores become approve / review / decline (or the names a decision point gives the three
bands) at inclusive thresholds."""

from __future__ import annotations

import pytest

from gateway.routing.thresholds import ThresholdPolicy

POLICY = ThresholdPolicy("card-fraud-policy-1", review_at=0.5, decline_at=0.85)


@pytest.mark.parametrize(
    ("score", "decision"),
    [
        (0.0, "approve"),
        (0.49999, "approve"),
        (0.5, "review"),
        (0.84999, "review"),
        (0.85, "decline"),
        (1.0, "decline"),
    ],
)
def test_thresholds_are_inclusive(score: float, decision: str) -> None:
    assert POLICY.decide(score) == decision


def test_equal_thresholds_leave_no_review_band() -> None:
    policy = ThresholdPolicy("p", review_at=0.7, decline_at=0.7)
    assert [policy.decide(s) for s in (0.69, 0.7, 0.71)] == ["approve", "decline", "decline"]


def test_zero_thresholds_decline_everything() -> None:
    assert ThresholdPolicy("p", 0.0, 0.0).decide(0.0) == "decline"


def test_a_decision_point_names_its_bands() -> None:
    churn = ThresholdPolicy("churn-policy-1", 0.6, 0.6, "none", "watch", "retain-offer")
    assert [churn.decide(s) for s in (0.1, 0.6, 0.9)] == ["none", "retain-offer", "retain-offer"]
