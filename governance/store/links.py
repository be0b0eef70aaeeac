"""Decisions linked to another decision: the shadow decisions that mirrored its request.

A shadow's link is ``extra.parent_decision_id`` in its stored JSON, found through the partial
index of migration 5 (``decisions_shadow_parent``): the query repeats the index's expression and
its ``arm = 'shadow'`` predicate exactly, as the planners of both backends require to use it.
"""

from __future__ import annotations

from dataclasses import fields

from governance.store.engine import Connection
from governance.store.entries import DecisionSummary
from governance.store.migrations import SHADOW_ARM_PREDICATE, SHADOW_PARENT

# DecisionSummary's fields are decisions columns of the same names.
_SUMMARY_COLUMNS = ", ".join(f.name for f in fields(DecisionSummary))


def shadows_sql(dialect: str) -> str:
    """The query ``shadows_of`` runs on a backend (``?`` placeholder), for EXPLAIN in tests."""
    return (
        f"SELECT {_SUMMARY_COLUMNS} FROM decisions "
        f"WHERE {SHADOW_ARM_PREDICATE} AND {SHADOW_PARENT[dialect]} = ? "
        "ORDER BY decided_at_us, decision_id"
    )


def shadows_of(db: Connection, decision_id: str) -> list[DecisionSummary] | None:
    """The shadow decisions whose parent is ``decision_id``, oldest first; None when the store
    holds neither that decision nor a shadow of it (a shadow may be stored before its parent)."""
    rows = db.execute(shadows_sql(db.dialect.name), (decision_id,)).fetchall()
    if rows:
        return [DecisionSummary(*r) for r in rows]
    stored = db.execute("SELECT 1 FROM decisions WHERE decision_id = ?", (decision_id,)).fetchone()
    return [] if stored is not None else None
