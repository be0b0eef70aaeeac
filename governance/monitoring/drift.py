"""A window's drift report, from its counters summed: what ``scoregate lineage drift`` prints,
the metrics export and the risk page show.

Per model version and arm over a window: each feature's and the score's PSI against the
version's training baseline (the manifest's bins), with its 0.1 / 0.25 band; for categories
also the chi-square p-value and Jensen-Shannon distance; the share of missing values (beside
the training share), of values beyond the baseline's range and of unknown categories; and the
decision mix. Two arms of one decision point over the same window are compared on the score in
shared bins (``arm_score_psi``); a shadow arm with the decisions it shadowed, on how often the
two decided differently (``shadow_pairs``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from governance.monitoring import measures
from governance.monitoring.windows import (
    DECISION,
    MISSING,
    OUT_OF_RANGE,
    SCORE,
    SCORE_SHARED,
    SHADOW_PAIR,
    SHARED_SCORE_BINS,
    UNKNOWN,
    baseline_slots,
    parse_pair_slot,
)
from runtimes.manifest import Histogram, Manifest

SlotCounts = Mapping[tuple[str, str], int]
"""(measure, slot) -> decisions, for one version and arm over a window."""


@dataclass(frozen=True, slots=True)
class MeasureDrift:
    """One feature's (or the score's) drift over a window."""

    measure: str
    kind: str
    """``number``, ``category`` or ``score``."""
    decisions: int
    psi: float
    band: str
    missing_share: float
    baseline_missing_share: float
    out_of_range_share: float = 0.0
    unknown_share: float = 0.0
    chi_square_p: float = math.nan
    jensen_shannon: float = math.nan
    slots: tuple[str, ...] = ()
    """The baseline's bins (``"0"``.. for numbers) or categories, in order."""
    shares: tuple[float, ...] = ()
    """The window's share of decisions per slot (among those with a value)."""
    baseline_shares: tuple[float, ...] = ()
    """The training rows' share per slot."""


@dataclass(frozen=True, slots=True)
class DriftReport:
    decisions: int
    decision_mix: dict[str, float]
    """Share of the window's decisions per decision."""
    score: MeasureDrift | None
    features: tuple[MeasureDrift, ...] = field(default_factory=tuple)

    @property
    def significant(self) -> tuple[MeasureDrift, ...]:
        """The measures past the 0.25 rule, the largest PSI first."""
        drifted = [m for m in (self.score, *self.features) if m and m.band == "significant"]
        return tuple(sorted(drifted, key=lambda m: -m.psi))


def _share(part: int, whole: int) -> float:
    return part / whole if whole else math.nan


def _measure(measure: str, kind: str, histogram: Histogram, counts: SlotCounts) -> MeasureDrift:
    slots, expected = baseline_slots(histogram)
    actual = [counts.get((measure, s), 0) for s in slots]
    missing = counts.get((measure, MISSING), 0)
    unknown = counts.get((measure, UNKNOWN), 0)
    total = sum(actual) + missing + unknown
    training = sum(histogram.counts) + histogram.missing
    psi = measures.psi(expected, actual)
    seen, trained = sum(actual), sum(expected)
    drift = MeasureDrift(
        measure=measure,
        kind=kind,
        decisions=total,
        psi=psi,
        band=measures.psi_band(psi),
        missing_share=_share(missing, total),
        baseline_missing_share=_share(histogram.missing, training),
        out_of_range_share=_share(counts.get((measure, OUT_OF_RANGE), 0), total),
        unknown_share=_share(unknown, total),
        slots=tuple(slots),
        shares=tuple(_share(n, seen) for n in actual),
        baseline_shares=tuple(_share(n, trained) for n in expected),
    )
    if histogram.edges:
        return drift
    chi = measures.chi_square(expected, actual)
    return dataclasses.replace(
        drift,
        chi_square_p=chi.p_value,
        jensen_shannon=measures.jensen_shannon(expected, actual),
    )


def drift_report(manifest: Manifest, counts: SlotCounts) -> DriftReport:
    """The report of one version (and arm) over a window whose counters sum to ``counts``."""
    mix = {slot: n for (measure, slot), n in counts.items() if measure == DECISION}
    decisions = sum(mix.values())
    baselines = manifest.baselines
    score = _measure(SCORE, "score", baselines[SCORE], counts) if SCORE in baselines else None
    features = tuple(
        _measure(f.name, "number" if h.edges else "category", h, counts)
        for f in manifest.features
        if (h := baselines.get(f.name)) is not None
    )
    return DriftReport(
        decisions=decisions,
        decision_mix={d: n / decisions for d, n in sorted(mix.items())} if decisions else {},
        score=score,
        features=features,
    )


@dataclass(frozen=True, slots=True)
class ShadowPairs:
    """A shadow arm's pairs with the decisions of one parent version over a window."""

    parent_model: str
    parent_version: str
    pairs: int
    disagreements: int
    """Pairs whose shadow decision differs from the parent's."""

    @property
    def disagreement_rate(self) -> float:
        return self.disagreements / self.pairs if self.pairs else math.nan


def shadow_pairs(counts: SlotCounts) -> tuple[ShadowPairs, ...]:
    """The shadow's pairs per parent version, from its ``SHADOW_PAIR`` counters."""
    totals: dict[tuple[str, str], list[int]] = {}
    for (measure, slot), n in counts.items():
        if measure == SHADOW_PAIR:
            model, version, same = parse_pair_slot(slot)
            seen = totals.setdefault((model, version), [0, 0])
            seen[0] += n
            seen[1] += 0 if same else n
    return tuple(ShadowPairs(m, v, n, d) for (m, v), (n, d) in sorted(totals.items()))


def arm_score_psi(primary: SlotCounts, other: SlotCounts) -> float:
    """The score PSI of ``other`` (a canary's or a shadow's arm) against ``primary`` over the
    same window, in the bins every version shares."""
    slots = [str(i) for i in range(SHARED_SCORE_BINS)]
    return measures.psi(
        [primary.get((SCORE_SHARED, s), 0) for s in slots],
        [other.get((SCORE_SHARED, s), 0) for s in slots],
    )
