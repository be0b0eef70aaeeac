"""Drift over time for a decision point, from the store's counters: what ``lineage drift``,
the metrics export and the risk page ask. Transport-free; the servicer converts."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

from governance.errors import InvalidRequest
from governance.monitoring.arms import ArmComparison, compare_arms
from governance.monitoring.drift import (
    DriftReport,
    ShadowPairs,
    arm_score_psi,
    drift_report,
    shadow_pairs,
)
from governance.monitoring.performance import Labelled, VersionPerformance, performance
from governance.monitoring.windows import HOUR_US
from governance.store import LineageStore

PRIMARY = "primary"
MAX_WINDOWS = 24 * 90
"""Hourly steps over 90 days at most in one answer."""


@dataclass(frozen=True, slots=True)
class ArmDrift:
    """One version and arm over one window."""

    model_name: str
    model_version: str
    arm: str
    report: DriftReport | None
    """None when the version's manifest is not registered (no baselines to compare with)."""
    score_psi_vs_primary: float
    """The score PSI against the primary arm in the same window (NaN for the primary)."""
    shadow_pairs: tuple[ShadowPairs, ...] = ()
    """A shadow arm's pairs with the decisions it shadowed, per parent version (empty for
    the other arms)."""


@dataclass(frozen=True, slots=True)
class DriftWindow:
    start_us: int
    end_us: int
    arms: tuple[ArmDrift, ...]


def _hours(since_us: int, until_us: int) -> tuple[int, int]:
    """The window rounded out to whole hours: counters are kept per hour."""
    start = since_us - since_us % HOUR_US
    end = until_us if until_us % HOUR_US == 0 else until_us - until_us % HOUR_US + HOUR_US
    return start, end


class DriftQueries:
    def __init__(self, store: LineageStore) -> None:
        self._store = store

    async def drift(
        self, decision_point: str, since_us: int, until_us: int, step_us: int = 0
    ) -> list[DriftWindow]:
        """Per window of ``step_us`` (whole hours; 0: one window) in [since, until)."""
        if not decision_point:
            raise InvalidRequest("decision_point: required")
        if until_us <= since_us:
            raise InvalidRequest("until: must be after since")
        if step_us < 0 or step_us % HOUR_US:
            raise InvalidRequest("step: a whole number of hours (0: one window)")
        start, end = _hours(since_us, until_us)
        step = step_us or end - start
        if (end - start) // step > MAX_WINDOWS:
            raise InvalidRequest(f"step: at most {MAX_WINDOWS} windows in one answer")
        windows = []
        for at in range(start, end, step):
            counted = await self._store.window_counts(decision_point, at, min(at + step, end))
            # Every primary version's counts together: the arm the others are compared with.
            primary: Counter[tuple[str, str]] = Counter()
            for c in counted:
                if c.arm == PRIMARY:
                    primary.update(c.counts)
            arms = tuple(
                ArmDrift(
                    c.model_name,
                    c.model_version,
                    c.arm,
                    None if c.manifest is None else drift_report(c.manifest, c.counts),
                    math.nan if c.arm == PRIMARY else arm_score_psi(primary, c.counts),
                    shadow_pairs(c.counts),
                )
                for c in counted
            )
            windows.append(DriftWindow(at, min(at + step, end), arms))
        return windows

    async def compare_arms(
        self, decision_point: str, since_us: int, until_us: int, canary_served_names: list[str]
    ) -> ArmComparison:
        """The canary arm against the primary over [since, until), any length of window."""
        if not decision_point:
            raise InvalidRequest("decision_point: required")
        if until_us <= since_us:
            raise InvalidRequest("until: must be after since")
        groups = await self._store.arm_groups(decision_point, since_us, until_us)
        return compare_arms(groups, canary_served_names)

    async def performance(
        self, decision_point: str, since_us: int, until_us: int, bad_labels: list[str]
    ) -> list[VersionPerformance]:
        """AUC, KS and bad rate by score band per version and arm, from the outcomes recorded
        for the decisions decided in [since, until); ``bad_labels`` name the adverse outcome."""
        if not decision_point:
            raise InvalidRequest("decision_point: required")
        if until_us <= since_us:
            raise InvalidRequest("until: must be after since")
        if not [label for label in bad_labels if label]:
            raise InvalidRequest("bad_labels: name at least one label of the adverse outcome")
        rows = await self._store.labelled_decisions(decision_point, since_us, until_us)
        return performance((Labelled(*r) for r in rows), set(bad_labels))
