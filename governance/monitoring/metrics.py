"""The store's monitoring metrics for Prometheus: drift over trailing windows, per decision
point, model version, arm and measure, refreshed in the background from the counters.

A scrape never queries the database: a task recomputes the snapshot every ``refresh_s`` (the
counters are hourly, so a minute is fresh enough) and the collector serves the last one. The
windows are the trailing hour and day, as whole hours (the current hour included); the chart's
alert rules (docs/monitoring.md) read ``window="1h"`` for spikes and ``"24h"`` for drift.

Families (every one has labels decision_point, model, version, arm, window):

- ``scoregate_lineage_drift_psi`` (+ measure: a feature or ``score``)
- ``scoregate_lineage_missing_share`` and ``scoregate_lineage_baseline_missing_share`` (+ measure)
- ``scoregate_lineage_out_of_range_share`` (+ measure)
- ``scoregate_lineage_decision_share`` (+ decision)
- ``scoregate_lineage_arm_score_psi``: the arm's score against the primary's (not the primary)
- ``scoregate_lineage_window_decisions``: decisions counted in the window
- ``scoregate_lineage_shadow_pairs`` and ``scoregate_lineage_shadow_disagreement_rate`` (+
  parent_model, parent_version): a shadow arm's pairs with the decisions it shadowed, and the
  share of them decided differently

With adverse outcome labels configured for a decision point (``--adverse-outcomes``), its
performance over the decisions of the trailing ``--performance-window-days`` (window ``<n>d``)
whose outcomes are recorded: ``scoregate_lineage_auc``, ``scoregate_lineage_ks``,
``scoregate_lineage_labelled_decisions`` and ``scoregate_lineage_labels_enough`` (1 when there
are enough labels of each kind for the figures to mean something, else 0).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from governance.monitoring.performance import VersionPerformance
from governance.monitoring.queries import ArmDrift, DriftQueries
from governance.monitoring.windows import HOUR_US
from governance.store import LineageStore

log = logging.getLogger(__name__)

WINDOWS = (("1h", 1), ("24h", 24))
"""Label and length in hours of the trailing windows exported."""
DEFAULT_REFRESH_S = 60.0
ARM_LABELS = ("decision_point", "model", "version", "arm", "window")


@dataclass(slots=True)
class Snapshot:
    """The exported windows' drift, as last computed."""

    arms: list[tuple[str, str, ArmDrift]] = field(default_factory=list)
    """(decision point, window label, arm drift)."""
    performance: list[tuple[str, str, VersionPerformance]] = field(default_factory=list)
    """(decision point, window label, one version and arm's performance)."""
    computed_at: float = 0.0


class DriftCollector(Collector):
    """Serves the latest snapshot; ``refresh`` recomputes it."""

    def __init__(
        self,
        store: LineageStore,
        adverse: dict[str, frozenset[str]] | None = None,
        performance_window_us: int = 90 * 24 * HOUR_US,
    ) -> None:
        self._queries = DriftQueries(store)
        self._store = store
        self._adverse = dict(adverse or {})
        self._performance_window_us = performance_window_us
        self.snapshot = Snapshot()

    async def refresh(self, now_us: int | None = None) -> None:
        now = now_us if now_us is not None else time.time_ns() // 1000
        end = now - now % HOUR_US + HOUR_US
        longest = max(hours for _, hours in WINDOWS)
        arms: list[tuple[str, str, ArmDrift]] = []
        for point in await self._store.counted_points(end - longest * HOUR_US):
            for label, hours in WINDOWS:
                (window,) = await self._queries.drift(point, end - hours * HOUR_US, end)
                arms.extend((point, label, arm) for arm in window.arms)
        performance: list[tuple[str, str, VersionPerformance]] = []
        label = f"{self._performance_window_us // (24 * HOUR_US)}d"
        for point, bad in sorted(self._adverse.items()):
            versions = await self._queries.performance(
                point, now - self._performance_window_us, now + 1, sorted(bad)
            )
            performance.extend((point, label, v) for v in versions)
        self.snapshot = Snapshot(arms, performance, time.time())

    async def run(self, refresh_s: float = DEFAULT_REFRESH_S) -> None:
        """Refreshes forever; a failed refresh is logged and the last snapshot stays."""
        while True:
            try:
                await self.refresh()
            except Exception:
                log.exception("monitoring metrics: refresh failed; serving the last snapshot")
            await asyncio.sleep(refresh_s)

    def collect(self) -> Iterable[GaugeMetricFamily]:
        return list(_families(self.snapshot))

    def describe(self) -> Iterable[GaugeMetricFamily]:
        # No describe-time collection: a registry would otherwise call collect() at register.
        return []


def _families(snapshot: Snapshot) -> Iterator[GaugeMetricFamily]:
    measure = (*ARM_LABELS, "measure")
    psi = GaugeMetricFamily(
        "scoregate_lineage_drift_psi",
        "PSI of a feature or the score against the version's training baseline.",
        labels=measure,
    )
    missing = GaugeMetricFamily(
        "scoregate_lineage_missing_share", "Share of decisions without the value.", labels=measure
    )
    trained = GaugeMetricFamily(
        "scoregate_lineage_baseline_missing_share",
        "Share of the training rows without the value.",
        labels=measure,
    )
    outside = GaugeMetricFamily(
        "scoregate_lineage_out_of_range_share",
        "Share of values beyond the baseline's outer bin edges.",
        labels=measure,
    )
    mix = GaugeMetricFamily(
        "scoregate_lineage_decision_share",
        "Share of the window's decisions per decision.",
        labels=(*ARM_LABELS, "decision"),
    )
    arm_psi = GaugeMetricFamily(
        "scoregate_lineage_arm_score_psi",
        "PSI of the arm's scores against the primary arm's, in the same window.",
        labels=ARM_LABELS,
    )
    decisions = GaugeMetricFamily(
        "scoregate_lineage_window_decisions",
        "Decisions counted in the window.",
        labels=ARM_LABELS,
    )
    paired = (*ARM_LABELS, "parent_model", "parent_version")
    pairs = GaugeMetricFamily(
        "scoregate_lineage_shadow_pairs",
        "Shadow decisions in the window paired with the decision they shadowed.",
        labels=paired,
    )
    disagreement = GaugeMetricFamily(
        "scoregate_lineage_shadow_disagreement_rate",
        "Share of the window's shadow pairs whose two decisions differ.",
        labels=paired,
    )
    for point, window, arm in snapshot.arms:
        labels = [point, arm.model_name, arm.model_version, arm.arm, window]
        if not math.isnan(arm.score_psi_vs_primary):
            arm_psi.add_metric(labels, arm.score_psi_vs_primary)
        for pair in arm.shadow_pairs:
            at = [*labels, pair.parent_model, pair.parent_version]
            pairs.add_metric(at, pair.pairs)
            disagreement.add_metric(at, pair.disagreement_rate)
        report = arm.report
        if report is None:
            continue
        decisions.add_metric(labels, report.decisions)
        for decision, share in report.decision_mix.items():
            mix.add_metric([*labels, decision], share)
        for m in (report.score, *report.features):
            if m is None:
                continue
            at = [*labels, m.measure]
            if not math.isnan(m.psi):
                psi.add_metric(at, m.psi)
            if not math.isnan(m.missing_share):
                missing.add_metric(at, m.missing_share)
                outside.add_metric(at, m.out_of_range_share)
            if not math.isnan(m.baseline_missing_share):
                trained.add_metric(at, m.baseline_missing_share)
    auc = GaugeMetricFamily(
        "scoregate_lineage_auc",
        "ROC AUC of the scores against the adverse outcomes recorded for them.",
        labels=ARM_LABELS,
    )
    ks = GaugeMetricFamily(
        "scoregate_lineage_ks",
        "Kolmogorov-Smirnov distance between adverse and other outcomes' scores.",
        labels=ARM_LABELS,
    )
    labelled = GaugeMetricFamily(
        "scoregate_lineage_labelled_decisions",
        "Decisions in the window with an outcome recorded.",
        labels=ARM_LABELS,
    )
    enough = GaugeMetricFamily(
        "scoregate_lineage_labels_enough",
        "1 when the window has enough adverse and other outcomes for AUC and KS to mean much.",
        labels=ARM_LABELS,
    )
    for point, window, v in snapshot.performance:
        labels = [point, v.model_name, v.model_version, v.arm, window]
        labelled.add_metric(labels, v.labelled)
        enough.add_metric(labels, 1.0 if v.enough else 0.0)
        if not math.isnan(v.auc):
            auc.add_metric(labels, v.auc)
        if not math.isnan(v.ks):
            ks.add_metric(labels, v.ks)
    yield from (psi, missing, trained, outside, mix, arm_psi, decisions, pairs, disagreement)
    yield from (auc, ks, labelled, enough)
