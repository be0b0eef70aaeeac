"""What each page shows, read from the store: plain values for the templates, no HTTP.

Every read goes through the store's reader thread (``LineageStore``), as the gRPC queries do,
and every listing reads an index range newest first, a page at a time (keyset pagination on
(decided_at, decision id)), never counting or scanning the whole selection.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from pathlib import Path

from governance.chain import Checkpoint
from governance.convert import decision_to_proto
from governance.errors import DecisionNotFound
from governance.monitoring.performance import VersionPerformance
from governance.monitoring.queries import ArmDrift, DriftQueries, DriftWindow
from governance.pseudonyms import EntityPseudonyms
from governance.queries import RoutedPeriod, routed_periods
from governance.store import LineageStore, StoredDecision
from governance.store.entries import DecisionFilter, DecisionSummary, RouteChange
from governance.web.checkpoints import CheckpointIndex
from governance.web.params import SearchParams
from runtimes.manifest import ManifestError


@dataclass(frozen=True, slots=True)
class SearchPage:
    rows: list[DecisionSummary]
    next_page: str
    """The token of the next page ("" on the last)."""


@dataclass(frozen=True, slots=True)
class DecisionView:
    stored: StoredDecision
    shadows: list[DecisionSummary]
    covered_by: Checkpoint | None
    """The first exported checkpoint whose chain includes this decision (None: none yet)."""
    head: Checkpoint
    registered: bool
    """Whether the artifact's manifest is in the store's model register."""


@dataclass(frozen=True, slots=True)
class ReplayOutcome:
    verdict: str
    """MATCH, MISMATCH or NOT CONFIRMED (equal, but not in the recorded environment)."""
    stored_score: float
    replayed_score: float
    model: str
    differences: list[str]


@dataclass(frozen=True, slots=True)
class Timeline:
    decision_point: str
    periods: list[tuple[str, RoutedPeriod]]
    """(model name, period), by start."""
    changes: list[RouteChange]
    """Route changes that touched this decision point, newest first."""
    start_us: int
    end_us: int


@dataclass(slots=True)
class DriftPage:
    decision_point: str
    whole: list[DriftWindow]
    steps: list[DriftWindow]
    step_hours: int
    performance: list[VersionPerformance] | None = None

    def psi_series(self, arm: ArmDrift) -> dict[str, list[tuple[int, float]]]:
        """PSI per step of the score and of each feature, for one version and arm."""
        key = (arm.model_name, arm.model_version, arm.arm)
        series: dict[str, list[tuple[int, float]]] = {}
        for window in self.steps:
            for a in window.arms:
                if (a.model_name, a.model_version, a.arm) != key or a.report is None:
                    continue
                measures = (*((a.report.score,) if a.report.score else ()), *a.report.features)
                for m in measures:
                    series.setdefault(m.measure, []).append((window.start_us, m.psi))
        return series


def _newest_first(pages: list[tuple[list[DecisionSummary], bool]], limit: int) -> SearchPage:
    """One page from pages of the same selection under different entity-key forms, each read
    from the same position: the newest ``limit`` of them all. The next page continues every
    form from the last row shown."""
    rows = sorted(
        (d for page, _ in pages for d in page),
        key=lambda d: (d.decided_at_us, d.decision_id),
        reverse=True,
    )
    shown = rows[:limit]
    more = len(rows) > limit or any(more for _, more in pages)
    token = f"{shown[-1].decided_at_us}/{shown[-1].decision_id}" if more and shown else ""
    return SearchPage(shown, token)


class PageQueries:
    def __init__(
        self,
        store: LineageStore,
        pseudonyms: EntityPseudonyms | None = None,
        checkpoint_file: Path | None = None,
        model_dir: Path | None = None,
    ) -> None:
        self._store = store
        self._pseudonyms = pseudonyms or EntityPseudonyms()
        self._drift = DriftQueries(store)
        self._checkpoints = None if checkpoint_file is None else CheckpointIndex(checkpoint_file)
        self.model_dir = model_dir

    async def search(self, p: SearchParams) -> SearchPage:
        """A page of the selection, newest first. An entity key the store may hold in two forms
        (raw and pseudonymised) reads both from the same position and merges them."""
        selection = DecisionFilter(
            p.since_us,
            p.until_us,
            entity_key=p.entity_key,
            model_name=p.model_name,
            model_version=p.model_version,
            decision_point=p.decision_point,
            decision=p.decision,
            reason_code=p.reason_code,
            reason_any_rank=p.reason_any_rank,
            request_id=p.request_id,
        )
        keys = (
            self._pseudonyms.lookup_keys(p.entity_key, p.decision_point) if p.entity_key else ("",)
        )
        pages = []
        for key in keys:
            page = await self._store.list_decisions(
                replace(selection, entity_key=key),
                p.limit,
                p.after,
                descending=True,
                with_counts=False,
            )
            pages.append((page.decisions, bool(page.next_page_token)))
        return _newest_first(pages, p.limit)

    async def decision(self, decision_id: str) -> DecisionView:
        stored = await self._store.get(decision_id)
        if stored is None:
            raise DecisionNotFound(f"decision_id: no decision {decision_id} in the lineage store")
        shadows = await self._store.list_shadows(decision_id) or []
        head = await self._store.head()
        covered = None
        if self._checkpoints is not None and stored.seq > 0:
            covered = await asyncio.to_thread(self._checkpoints.covering, stored.seq)
        manifest = await self._store.get_manifest(stored.record.model_sha256)
        return DecisionView(
            stored, [s for s in shadows if s.decision_id != decision_id], covered, head,
            manifest is not None,
        )  # fmt: skip

    @property
    def replay_available(self) -> bool:
        return self.model_dir is not None

    async def replay(self, decision_id: str) -> ReplayOutcome:
        """Re-scores the stored inputs with the recorded artifact (``governance.replay``), in a
        thread: onnxruntime must not hold the event loop. ManifestError when the artifact is
        not in the model directory."""
        from governance.replay import replay

        if self.model_dir is None:
            raise ManifestError("replay is not available: the store has no --web-model-dir")
        page = await self.decision(decision_id)
        record = decision_to_proto(page.stored)
        result = await asyncio.to_thread(replay, record, self.model_dir)
        if result.match:
            verdict = "MATCH"
        elif result.score_equal and not result.reason_differences:
            verdict = "NOT CONFIRMED"
        else:
            verdict = "MISMATCH"
        differences = [*result.environment_differences, *result.reason_differences]
        if not result.score_equal:
            differences.insert(
                0, f"score: stored {result.stored_score!r}, replayed {result.replayed_score!r}"
            )
        return ReplayOutcome(
            verdict, result.stored_score, result.replayed_score, result.model, differences
        )

    async def decision_points(self) -> list[str]:
        """The decision points the routing history names, for the pages' menus."""
        changes = await self._store.route_changes()
        return sorted({t.decision_point for c in changes for t in c.targets})

    async def timeline(self, decision_point: str, since_us: int, until_us: int) -> Timeline:
        """Which version served which share of ``decision_point``, from when to when, from the
        route-change history (every period that overlaps [since, until))."""
        changes = await self._store.route_changes()
        models = sorted(
            {t.model_name for c in changes for t in c.targets if t.decision_point == decision_point}
        )
        periods = sorted(
            (
                (model, period)
                for model in models
                for period in routed_periods(changes, model, decision_point)
                if period.started_us < until_us
                and (period.stopped_us is None or period.stopped_us > since_us)
            ),
            key=lambda found: (found[1].started_us, found[1].arm, found[1].model_version),
        )
        touched = [
            c
            for c in changes
            if since_us <= c.changed_at_us < until_us
            and (
                any(t.decision_point == decision_point for t in c.targets)
                or decision_point in c.diff.get("decision_points", {})
            )
        ]
        # The chart starts where the history does, when that is inside the period.
        first = min((p.started_us for _, p in periods), default=since_us)
        start = max(since_us, first - (until_us - first) // 20)
        return Timeline(decision_point, periods, touched[::-1], start, until_us)

    async def drift(
        self,
        decision_point: str,
        since_us: int,
        until_us: int,
        step_hours: int,
        bad_labels: list[str],
    ) -> DriftPage:
        """The period as one window and in steps, and performance when adverse labels are named
        (``governance.monitoring``: counters per hour, never the decisions themselves)."""
        step = step_hours * 3_600_000_000
        whole = await self._drift.drift(decision_point, since_us, until_us)
        steps = await self._drift.drift(decision_point, since_us, until_us, step)
        page = DriftPage(decision_point, whole, steps, step_hours)
        if bad_labels:
            page.performance = await self._drift.performance(
                decision_point, since_us, until_us, bad_labels
            )
        return page
