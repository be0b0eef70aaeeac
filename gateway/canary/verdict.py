"""The verdict on one step, from the plan and the evidence of the step's window.

- A crossing rolls back at once, whenever it is seen during the dwell: every threshold the
  canary crossed is named in the reason, with the measured value and the limit.
- Thresholds are judged only once the canary arm has ``min_decisions`` in the window; before
  that, nothing is decided. A comparison with the primary is skipped when the primary had no
  decision (or either arm no model score) in the window.
- At the end of the dwell, a step with ``min_decisions`` and no crossing is promoted; one
  without enough decisions is held for another dwell, and rolled back after ``max_holds``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from gateway.canary.plan import CanaryPlan

VerdictKind = Literal["promote", "hold", "rollback"]


@dataclass(frozen=True, slots=True)
class ArmEvidence:
    decisions: int
    fallbacks: int
    errors: int
    latency_p99_ms: float
    decision_counts: Mapping[str, int] = field(default_factory=dict)
    model_versions: tuple[str, ...] = ()

    @property
    def error_rate(self) -> float:
        return self.errors / self.decisions if self.decisions else 0.0

    @property
    def fallback_rate(self) -> float:
        return self.fallbacks / self.decisions if self.decisions else 0.0


@dataclass(frozen=True, slots=True)
class Evidence:
    """Both arms over [since, until) of one step, as the lineage store counted them."""

    since_us: int
    until_us: int
    primary: ArmEvidence
    canary: ArmEvidence
    score_psi: float
    decision_mix_shift: float

    def to_json(self) -> dict[str, Any]:
        body = asdict(self)
        for name in ("score_psi", "decision_mix_shift"):
            if math.isnan(body[name]):
                body[name] = None  # JSON has no NaN
        for arm in ("primary", "canary"):
            a = getattr(self, arm)
            body[arm]["decision_counts"] = dict(a.decision_counts)
            body[arm]["model_versions"] = list(a.model_versions)
            body[arm]["error_rate"] = round(a.error_rate, 6)
            body[arm]["fallback_rate"] = round(a.fallback_rate, 6)
        return body


@dataclass(frozen=True, slots=True)
class Verdict:
    kind: VerdictKind
    reason: str


def crossings(plan: CanaryPlan, e: Evidence) -> list[str]:
    """Each threshold the canary crossed, as ``measure value above threshold limit``."""
    t, c, p = plan.thresholds, e.canary, e.primary
    out: list[str] = []

    def check(measure: str, value: float, limit: float | None, name: str) -> None:
        if limit is not None and not math.isnan(value) and value > limit:
            out.append(f"{measure} {value:.4g} above {name} {limit:g}")

    check("canary error rate", c.error_rate, t.max_error_rate, "max_error_rate")
    check("canary latency p99 (ms)", c.latency_p99_ms, t.max_latency_p99_ms, "max_latency_p99_ms")
    if p.decisions:
        check(
            "error rate increase over the primary",
            c.error_rate - p.error_rate,
            t.max_error_rate_increase,
            "max_error_rate_increase",
        )
        check(
            "fallback rate increase over the primary",
            c.fallback_rate - p.fallback_rate,
            t.max_fallback_rate_increase,
            "max_fallback_rate_increase",
        )
        check(
            "latency p99 increase over the primary (ms)",
            c.latency_p99_ms - p.latency_p99_ms,
            t.max_latency_p99_increase_ms,
            "max_latency_p99_increase_ms",
        )
        check("score PSI against the primary", e.score_psi, t.max_score_psi, "max_score_psi")
        check(
            "decision-mix shift against the primary",
            e.decision_mix_shift,
            t.max_decision_mix_shift,
            "max_decision_mix_shift",
        )
    return out


def judge(plan: CanaryPlan, evidence: Evidence, dwell_over: bool, holds: int) -> Verdict | None:
    """The step's verdict, or None to keep dwelling. ``holds``: dwells already added."""
    n = evidence.canary.decisions
    if n < plan.min_decisions:
        if not dwell_over:
            return None
        if holds >= plan.max_holds:
            return Verdict(
                "rollback",
                f"the canary arm had {n} decisions, below min_decisions {plan.min_decisions}, "
                f"after {holds} holds (max_holds {plan.max_holds})",
            )
        return Verdict(
            "hold", f"the canary arm had {n} decisions, below min_decisions {plan.min_decisions}"
        )
    crossed = crossings(plan, evidence)
    if crossed:
        return Verdict("rollback", "; ".join(crossed))
    if not dwell_over:
        return None
    return Verdict(
        "promote",
        f"every threshold held over {n} canary and {evidence.primary.decisions} primary decisions",
    )
