"""Threshold policies: how a score in [0, 1] becomes approve, review or decline."""

from __future__ import annotations

from dataclasses import dataclass

APPROVE = "approve"
REVIEW = "review"
DECLINE = "decline"


@dataclass(frozen=True, slots=True)
class ThresholdPolicy:
    """Scores at or above ``decline_at`` decline, at or above ``review_at`` review, else approve.

    ``review_at == decline_at`` is allowed and means there is no review band.
    """

    version: str
    review_at: float
    decline_at: float

    def decide(self, score: float) -> str:
        if score >= self.decline_at:
            return DECLINE
        if score >= self.review_at:
            return REVIEW
        return APPROVE
