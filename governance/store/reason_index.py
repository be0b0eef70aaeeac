"""Decisions by reason code (migration 6): the principal one, and any at all.

The principal reason's code is a decisions column (``tables.principal_reason``) under a partial
index; every code a decision's reasons carry is an entry (code, decided_at_us, decision_id) of
``decision_reasons``, whose key orders a code's decisions by time, so both selections read one
index range instead of the decisions of the whole period. Entries are written in the transaction
that stores their decision and derived from its record alone, so ``verify`` can hold the table to
the records.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from governance.store.engine import Connection
from governance.store.migrations import PRINCIPAL_REASON_PREDICATE
from lineage.v1.record import DecisionRecord

_INSERT = "INSERT INTO decision_reasons (code, decided_at_us, decision_id) VALUES (?, ?, ?)"


def reason_entries(record: DecisionRecord) -> Iterator[tuple[str, int, str]]:
    """The record's decision_reasons entries: one per distinct non-empty code."""
    for code in dict.fromkeys(r.code for r in record.reasons if r.code):
        yield code, record.decided_at_us, record.decision_id


class ReasonIndex:
    """Whether this build's schema has the reason index (a store opened with fewer migrations,
    as the upgrade tests do, has neither the column nor the table)."""

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled

    def add(self, db: Connection, records: Iterable[DecisionRecord]) -> None:
        entries = [e for record in records for e in reason_entries(record)]
        if entries:
            db.execute_many(_INSERT, entries)

    def purge(self, db: Connection, cutoff_us: int) -> None:
        """Drops the entries of purged decisions (all decided before the cutoff)."""
        db.execute(
            "DELETE FROM decision_reasons WHERE decided_at_us < ? AND NOT EXISTS "
            "(SELECT 1 FROM decisions d WHERE d.decision_id = decision_reasons.decision_id)",
            (cutoff_us,),
        )


def reason_condition(
    code: str, any_rank: bool, since_us: int, until_us: int
) -> tuple[str, list[object]]:
    """A WHERE condition on decisions for those with this reason code in [since, until): the
    principal reason's column, or the code's entries at any rank; and its parameters."""
    if not any_rank:
        # The partial index's predicate, repeated literally: SQLite uses the index only then.
        return f"principal_reason = ? AND {PRINCIPAL_REASON_PREDICATE}", [code]
    return (
        "decision_id IN (SELECT decision_id FROM decision_reasons WHERE code = ? "
        "AND decided_at_us >= ? AND decided_at_us < ?)",
        [code, since_us, until_us],
    )
