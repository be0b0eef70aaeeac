"""Counting the decisions stored before the monitoring counters existed (schema version 8).

Decisions are counted at ingest from the moment version 8 was applied; the ones stored before
it (``stored_at_us`` earlier than that version's ``applied_at_us``) are counted here, a batch of
``limit`` at a time in chain order, each batch in one write transaction that also records the
last seq it counted (``drift_backfill``, version 10). A run stopped halfway resumes there; a
finished run counts nothing again. Decisions are in seq order of storage, so the first one
stored after the boundary ends the backfill.

Their shadow pairs are counted too when both halves were stored before the boundary (a pair
with a half stored later was counted when that half arrived).
"""

from __future__ import annotations

from dataclasses import dataclass

from governance.errors import InvalidRequest
from governance.monitoring import windows
from governance.store.clock import now_us
from governance.store.drift_counts import DriftCounter
from governance.store.engine import Connection
from governance.store.migrations import DRIFT_COUNTS_VERSION
from lineage.v1.record import PARENT_DECISION_ID, DecisionRecord, record_from_json

_CHUNK = 500


@dataclass(frozen=True, slots=True)
class BackfillProgress:
    through_seq: int
    """The last decision's seq counted so far."""
    counted: int
    """Decisions read and counted so far (fallbacks and unregistered versions add nothing)."""
    finished: bool
    boundary_us: int
    """When version 8 was applied: decisions stored before it are the backfill's."""


def _boundary(db: Connection) -> int:
    row = db.execute(
        "SELECT applied_at_us FROM schema_migrations WHERE version = ?", (DRIFT_COUNTS_VERSION,)
    ).fetchone()
    if row is None:
        raise InvalidRequest("the store has no monitoring counters (schema version 8)")
    return int(row[0])


def progress(db: Connection) -> BackfillProgress:
    boundary = _boundary(db)
    row = db.execute(
        "SELECT through_seq, counted, finished_at_us FROM drift_backfill WHERE id = 1"
    ).fetchone()
    if row is None:
        return BackfillProgress(0, 0, False, boundary)
    return BackfillProgress(int(row[0]), int(row[1]), int(row[2]) > 0, boundary)


def _old_pairs(db: Connection, shadows: list[DecisionRecord], boundary_us: int) -> windows.Counts:
    counts: windows.Counts = windows.Counts()
    parent_ids = sorted({s.extra[PARENT_DECISION_ID] for s in shadows})
    parents: dict[str, tuple[str, str, str, str, int]] = {}
    for start in range(0, len(parent_ids), _CHUNK):
        chunk = parent_ids[start : start + _CHUNK]
        rows = db.execute(
            "SELECT decision_id, decision_point, model_name, model_version, decision, "
            "decided_at_us FROM decisions "
            f"WHERE decision_id IN ({', '.join('?' * len(chunk))}) AND stored_at_us < ?",
            (*chunk, boundary_us),
        ).fetchall()
        for r in rows:
            parents[str(r[0])] = (str(r[1]), str(r[2]), str(r[3]), str(r[4]), int(r[5]))
    for s in shadows:
        parent = parents.get(s.extra[PARENT_DECISION_ID])
        if parent is None:
            continue
        point, name, version, decision, decided_at = parent
        key = windows.WindowKey(
            point, s.model_name, s.model_version, windows.SHADOW, windows.hour_of(decided_at)
        )
        slot = windows.pair_slot(name, version, same=s.decision == decision)
        counts[(key, windows.SHADOW_PAIR, slot)] += 1
    return counts


def backfill_batch(db: Connection, counter: DriftCounter, limit: int) -> BackfillProgress:
    """Counts the next ``limit`` decisions stored before the boundary; returns the progress."""
    with db.write_transaction():
        before = progress(db)
        if before.finished:
            return before
        rows = db.execute(
            "SELECT seq, stored_at_us, record_json FROM decisions WHERE seq > ? "
            "ORDER BY seq LIMIT ?",
            (before.through_seq, limit),
        ).fetchall()
        finished = len(rows) < limit
        records: list[DecisionRecord] = []
        through = before.through_seq
        for seq, stored_at, record_json in rows:
            if int(stored_at) >= before.boundary_us:
                finished = True
                break
            records.append(record_from_json(record_json))
            through = int(seq)
        counter.add(db, records, pairs=False)
        shadows = [
            r for r in records if r.arm == windows.SHADOW and r.extra.get(PARENT_DECISION_ID)
        ]
        if shadows:
            counter.upsert(db, _old_pairs(db, shadows, before.boundary_us))
        after = BackfillProgress(
            through, before.counted + len(records), finished, before.boundary_us
        )
        db.execute("DELETE FROM drift_backfill WHERE id = 1", ())
        db.execute(
            "INSERT INTO drift_backfill (id, through_seq, counted, finished_at_us) "
            "VALUES (1, ?, ?, ?)",
            (after.through_seq, after.counted, now_us() if finished else 0),
        )
        return after
