"""The monitoring counters (migration 8), added in the transaction that stores their decisions.

``governance.monitoring.windows`` says what is counted; this adds a batch's counts to
``drift_counts`` (one upsert per distinct key, a few hundred for a batch of one hour's
decisions) and sums a window's rows back. A decision's version must have its manifest
registered (the gateway registers every version it routes to at start): the counters bin values
by that manifest's baselines. Manifests are immutable per artifact sha256, so each is read once.
The counters are aggregates with no personal data; a purge leaves them, and ``verify`` does not
hold them to the records: they are derived, like an index.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from governance.monitoring import windows
from governance.store.engine import Connection
from governance.store.shadow_pairs import count_pairs
from lineage.v1.record import DecisionRecord
from runtimes.manifest import Manifest

_UPSERT = (
    "INSERT INTO drift_counts "
    "(decision_point, hour_us, model_name, model_version, arm, measure, slot, count) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (decision_point, hour_us, model_name, model_version, arm, measure, slot) "
    "DO UPDATE SET count = drift_counts.count + excluded.count"
)


@dataclass(frozen=True, slots=True)
class WindowCounts:
    """One version and arm's counters summed over a window: (measure, slot) -> decisions, and
    the version's registered manifest (its baselines), if any."""

    model_name: str
    model_version: str
    arm: str
    counts: Mapping[tuple[str, str], int]
    manifest: Manifest | None


class DriftCounter:
    """Adds decisions to the counters; ``enabled`` is False on a store opened with fewer
    migrations (the upgrade tests)."""

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled
        self._manifests: dict[str, Manifest] = {}

    def _manifest(self, db: Connection, sha256: str) -> Manifest | None:
        manifest = self._manifests.get(sha256)
        if manifest is None:
            row = db.execute(
                "SELECT manifest_json FROM manifests WHERE artifact_sha256 = ?", (sha256,)
            ).fetchone()
            if row is None:
                return None
            manifest = self._manifests[sha256] = Manifest.model_validate_json(row[0])
        return manifest

    def add(self, db: Connection, records: Iterable[DecisionRecord], *, pairs: bool = True) -> int:
        """Counts ``records`` (newly stored ones only, already inserted in this transaction)
        and, with ``pairs``, the shadow pairs they complete; returns the rows upserted."""
        records = list(records)
        manifests: dict[tuple[str, str], Manifest] = {}
        for r in records:
            key = (r.model_name, r.model_version)
            if key not in manifests and not r.fallback_reason:
                manifest = self._manifest(db, r.model_sha256)
                if manifest is not None:
                    manifests[key] = manifest
        counts = windows.count(records, manifests)
        if pairs:
            counts.update(count_pairs(db, records))
        return self.upsert(db, counts)

    @staticmethod
    def upsert(db: Connection, counts: windows.Counts) -> int:
        """Adds ``counts`` to the stored counters; returns the rows upserted."""
        if counts:
            db.execute_many(
                _UPSERT,
                [
                    (k.decision_point, k.hour_us, k.model_name, k.model_version, k.arm, m, s, n)
                    for (k, m, s), n in counts.items()
                ],
            )
        return len(counts)


def window_counts(
    db: Connection, decision_point: str, since_us: int, until_us: int
) -> list[WindowCounts]:
    """Every version and arm's counters over the hours starting in [since, until)."""
    rows: Sequence[tuple[str, str, str, str, str, int]] = db.execute(
        "SELECT model_name, model_version, arm, measure, slot, SUM(count) FROM drift_counts "
        "WHERE decision_point = ? AND hour_us >= ? AND hour_us < ? "
        "GROUP BY model_name, model_version, arm, measure, slot",
        (decision_point, since_us, until_us),
    ).fetchall()
    grouped: dict[tuple[str, str, str], dict[tuple[str, str], int]] = {}
    for name, version, arm, measure, slot, n in rows:
        grouped.setdefault((name, version, arm), {})[(measure, slot)] = int(n)
    manifests: dict[tuple[str, str], Manifest | None] = {}
    for name, version, _ in grouped:
        if (name, version) not in manifests:
            row = db.execute(
                "SELECT manifest_json FROM manifests WHERE name = ? AND version = ? "
                "ORDER BY registered_at_us DESC LIMIT 1",
                (name, version),
            ).fetchone()
            manifests[(name, version)] = (
                None if row is None else Manifest.model_validate_json(row[0])
            )
    return [
        WindowCounts(*key, counts, manifests[key[:2]]) for key, counts in sorted(grouped.items())
    ]


def counted_points(db: Connection, since_us: int) -> list[str]:
    """The decision points with counters in the hours from ``since_us`` on."""
    rows = db.execute(
        "SELECT DISTINCT decision_point FROM drift_counts WHERE hour_us >= ?", (since_us,)
    ).fetchall()
    return sorted(str(r[0]) for r in rows)


def labelled_decisions(
    db: Connection, decision_point: str, since_us: int, until_us: int
) -> list[tuple[str, str, str, float, str]]:
    """(model, version, arm, score, label) of the model decisions decided in [since, until)
    that have an outcome, the latest outcome of each; found through the decisions' time index
    and the outcomes' decision index."""
    rows = db.execute(
        "SELECT d.decision_id, d.model_name, d.model_version, d.arm, d.score, o.label, o.at_us "
        "FROM decisions d JOIN outcomes o ON o.decision_id = d.decision_id "
        "WHERE d.decision_point = ? AND d.decided_at_us >= ? AND d.decided_at_us < ? "
        "AND d.fallback_reason = ''",
        (decision_point, since_us, until_us),
    ).fetchall()
    latest: dict[str, tuple[int, tuple[str, str, str, float, str]]] = {}
    for decision_id, name, version, arm, score, label, at_us in rows:
        seen = latest.get(decision_id)
        if seen is None or at_us >= seen[0]:
            latest[decision_id] = (at_us, (name, version, arm, float(score), label))
    return [row for _, row in latest.values()]
