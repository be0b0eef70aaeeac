"""Shadow pairs counted into the monitoring counters as their second half is stored.

A shadow decision mirrors its parent's request (``extra.parent_decision_id``); the pair is
what a challenger is judged on: did it decide as the champion did? Either half may reach the
store first, so a pair is counted by whichever is stored second: a new shadow whose parent is
already stored (or in the same batch) looks its parent up by its key; a new parent looks for
shadows stored in earlier batches through the partial index of migration 5
(``decisions_shadow_parent``), one query per batch. No query reads more than the batch's own
pairs.

A pair adds one to the shadow's counters (its version, arm ``shadow``) in the hour its parent
was decided, under ``windows.SHADOW_PAIR`` with a slot naming the parent's model, version and
whether the two decisions were the same.
"""

from __future__ import annotations

from collections.abc import Sequence

from governance.monitoring import windows
from governance.store.engine import Connection
from governance.store.migrations import SHADOW_ARM_PREDICATE, SHADOW_PARENT
from lineage.v1.record import PARENT_DECISION_ID, DecisionRecord

_CHUNK = 500
"""Ids per IN list: within both backends' parameter limits."""

_Half = tuple[str, str, str, str, int]
"""(decision point, model name, model version, decision, decided at)."""


def _parents(db: Connection, ids: list[str]) -> dict[str, _Half]:
    found: dict[str, _Half] = {}
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        rows = db.execute(
            "SELECT decision_id, decision_point, model_name, model_version, decision, "
            f"decided_at_us FROM decisions WHERE decision_id IN ({', '.join('?' * len(chunk))})",
            tuple(chunk),
        ).fetchall()
        for decision_id, *half in rows:
            found[str(decision_id)] = (
                str(half[0]),
                str(half[1]),
                str(half[2]),
                str(half[3]),
                int(half[4]),
            )
    return found


def shadows_sql(dialect: str, ids: int) -> str:
    """The query for the shadows stored of ``ids`` parents (for EXPLAIN in tests)."""
    return (
        f"SELECT {SHADOW_PARENT[dialect]}, decision_id, model_name, model_version, decision "
        f"FROM decisions WHERE {SHADOW_ARM_PREDICATE} "
        f"AND {SHADOW_PARENT[dialect]} IN ({', '.join('?' * ids)})"
    )


def _stored_shadows(db: Connection, parent_ids: list[str]) -> list[tuple[str, str, str, str, str]]:
    """(parent id, shadow id, model name, model version, decision) of stored shadows."""
    out: list[tuple[str, str, str, str, str]] = []
    for start in range(0, len(parent_ids), _CHUNK):
        chunk = parent_ids[start : start + _CHUNK]
        rows = db.execute(shadows_sql(db.dialect.name, len(chunk)), tuple(chunk)).fetchall()
        out.extend((str(r[0]), str(r[1]), str(r[2]), str(r[3]), str(r[4])) for r in rows)
    return out


def _add(counts: windows.Counts, parent: _Half, name: str, version: str, decision: str) -> None:
    point, parent_name, parent_version, parent_decision, decided_at = parent
    key = windows.WindowKey(point, name, version, windows.SHADOW, windows.hour_of(decided_at))
    slot = windows.pair_slot(parent_name, parent_version, same=decision == parent_decision)
    counts[(key, windows.SHADOW_PAIR, slot)] += 1


def count_pairs(db: Connection, records: Sequence[DecisionRecord]) -> windows.Counts:
    """The pair counters ``records`` (the batch newly stored, already inserted) complete."""
    counts: windows.Counts = windows.Counts()
    new = {r.decision_id for r in records}
    shadows = [r for r in records if r.arm == windows.SHADOW and r.extra.get(PARENT_DECISION_ID)]
    if shadows:
        parents = _parents(db, sorted({r.extra[PARENT_DECISION_ID] for r in shadows}))
        for s in shadows:
            parent = parents.get(s.extra[PARENT_DECISION_ID])
            if parent is not None:
                _add(counts, parent, s.model_name, s.model_version, s.decision)
    others = {r.decision_id: r for r in records if r.arm != windows.SHADOW}
    if others:
        for parent_id, shadow_id, name, version, decision in _stored_shadows(db, list(others)):
            if shadow_id in new:
                continue  # counted above, from the shadow's side
            p = others[parent_id]
            half = (p.decision_point, p.model_name, p.model_version, p.decision, p.decided_at_us)
            _add(counts, half, name, version, decision)
    return counts
