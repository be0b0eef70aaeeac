"""Threshold policies: how a score in [0, 1] becomes a decision.

Three bands: below ``review_at``, from ``review_at``, from ``decline_at``. Credit and fraud call
them approve, review and decline; a decision point may name them otherwise (a churn model's
``none`` / ``retain-offer``, a trade monitor's ``pass`` / ``flag``). The highest band is always
the adverse one: the outcome principal reasons explain.
"""

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
    approve: str = APPROVE
    """The decision below ``review_at``."""
    review: str = REVIEW
    """The decision from ``review_at`` to ``decline_at``."""
    decline: str = DECLINE
    """The decision from ``decline_at``: the adverse one."""

    def decide(self, score: float) -> str:
        if score >= self.decline_at:
            return self.decline
        if score >= self.review_at:
            return self.review
        return self.approve


MAX_REASONS = 4
"""Regulation B and FCRA: at most four principal reasons (``runtimes.reasons``)."""


@dataclass(frozen=True, slots=True)
class ReasonPolicy:
    """How many principal reasons a decision point's model decisions carry."""

    max_reasons: int = MAX_REASONS
    """0 to 4; 0 asks the runtimes for no contributions."""
    for_approvals: bool = False
    """Whether the lowest band (approve, or what the policy calls it) carries reasons."""

    def wanted(self, policy: ThresholdPolicy, decision: str) -> int:
        """How many reasons a decision of ``policy`` carries at most."""
        if decision == policy.approve and not self.for_approvals:
            return 0
        return self.max_reasons
