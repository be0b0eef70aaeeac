"""A decision point's canary arm against its primary over one window, from grouped decisions.

What a canary controller judges a step on (``CompareArms``). The window is minutes, not whole
hours, so it is read from the decisions themselves rather than the hourly counters; the score
is binned in the counters' shared bins (``windows.SHARED_SCORE_BINS``), so the PSI here is the
one ``lineage drift`` reports as a canary's score PSI against the primary over the same period.

A fallback decision is attributed to the arm whose model failed: the canary's when its
``extra.fallback_from`` names the canary version as served, the primary's otherwise. Shadow and
pinned decisions are not part of either arm.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from governance.monitoring.measures import psi
from governance.monitoring.windows import SHARED_SCORE_BINS

PRIMARY, CANARY, FALLBACK = "primary", "canary", "fallback"
ERROR_REASONS = frozenset({"unavailable", "runtime_error", "invalid_output", "circuit_open"})
"""Fallbacks where the model failed; a ``timeout`` is slowness, which latency already shows."""
LATENCY_STEP_US = 100
"""Latencies are grouped in 0.1 ms steps: the p99 is exact to that step."""


@dataclass(frozen=True, slots=True)
class ArmGroup:
    """Decisions of a window alike in every way the comparison reads, and how many."""

    arm: str
    model_version: str
    fallback_reason: str
    fallback_from: str
    decision: str
    score_bin: int
    """The score's bin of ``SHARED_SCORE_BINS`` equal bins of [0, 1]."""
    latency_step: int
    """decided_at - received_at in ``LATENCY_STEP_US`` steps, rounded down."""
    count: int


@dataclass(slots=True)
class ArmWindow:
    arm: str
    decisions: int = 0
    fallbacks: int = 0
    errors: int = 0
    latency_p99_ms: float = 0.0
    score_bins: list[int] = field(default_factory=lambda: [0] * SHARED_SCORE_BINS)
    decision_counts: Counter[str] = field(default_factory=Counter)
    model_versions: set[str] = field(default_factory=set)

    @property
    def error_rate(self) -> float:
        return self.errors / self.decisions if self.decisions else 0.0


@dataclass(frozen=True, slots=True)
class ArmComparison:
    primary: ArmWindow
    canary: ArmWindow
    score_psi: float
    """The canary's scores against the primary's; NaN when either has none."""
    decision_mix_shift: float
    """Total variation distance between the decision mixes; NaN when either has none."""


def compare_arms(groups: Iterable[ArmGroup], canary_served_names: Sequence[str]) -> ArmComparison:
    arms = {PRIMARY: ArmWindow(PRIMARY), CANARY: ArmWindow(CANARY)}
    latencies: dict[str, Counter[int]] = {PRIMARY: Counter(), CANARY: Counter()}
    canary_names = set(canary_served_names)
    for g in groups:
        if g.arm == FALLBACK:
            name = CANARY if g.fallback_from in canary_names else PRIMARY
        elif g.arm in arms:
            name = g.arm
        else:
            continue
        arm = arms[name]
        arm.decisions += g.count
        arm.decision_counts[g.decision] += g.count
        latencies[name][g.latency_step] += g.count
        if g.arm == FALLBACK:
            arm.fallbacks += g.count
            if g.fallback_reason in ERROR_REASONS:
                arm.errors += g.count
        else:
            arm.score_bins[min(SHARED_SCORE_BINS - 1, max(0, g.score_bin))] += g.count
            arm.model_versions.add(g.model_version)
    for name, arm in arms.items():
        arm.latency_p99_ms = _quantile(latencies[name], 0.99) * LATENCY_STEP_US / 1000
    primary, canary = arms[PRIMARY], arms[CANARY]
    return ArmComparison(
        primary,
        canary,
        psi(primary.score_bins, canary.score_bins),
        _total_variation(primary.decision_counts, canary.decision_counts),
    )


def _quantile(counts: Counter[int], q: float) -> float:
    """The smallest step at or below which at least ``q`` of the counted values lie (0 if none);
    the upper end of that step, so a p99 is never reported below what was measured."""
    total = sum(counts.values())
    if not total:
        return 0.0
    need = math.ceil(q * total)
    seen = 0
    for step in sorted(counts):
        seen += counts[step]
        if seen >= need:
            return float(step + 1)
    raise AssertionError("unreachable: the counts sum to their total")


def _total_variation(a: Counter[str], b: Counter[str]) -> float:
    ta, tb = sum(a.values()), sum(b.values())
    if not ta or not tb:
        return math.nan
    return sum(abs(a[k] / ta - b[k] / tb) for k in a.keys() | b.keys()) / 2
