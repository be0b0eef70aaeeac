"""SQLite's entity entries, kept apart from the decisions table and merged in bulk (migration 4).

New decisions' (entity_key, decided_at_us, decision_id) go to ``decision_entities_recent``,
which has no index, so appending to it writes sequential pages; once it holds ``merge_rows``
entries they are merged, sorted, into ``decision_entities``. Queries by entity read both.
PostgreSQL indexes the decisions table instead and never uses this (``enabled`` is False).
"""

from __future__ import annotations

from governance.store.engine import Connection
from governance.store.tables import DECISION_COLUMNS

# A merge rewrites each leaf of decision_entities once, so more entries per merge means fewer
# bytes written per record; but entity queries scan the unindexed recent table, which grows
# with it (the trade-off's figures: docs/performance.md).
ENTITY_MERGE_ROWS = 20_000

# Where a decisions row (DECISION_COLUMNS order) holds the entity entry's fields.
_ENTRY_FIELDS = tuple(
    DECISION_COLUMNS.index(c) for c in ("entity_key", "decided_at_us", "decision_id")
)
_MERGE_RECENT = (
    "INSERT OR IGNORE INTO decision_entities (entity_key, decided_at_us, decision_id) "
    "SELECT entity_key, decided_at_us, decision_id FROM decision_entities_recent "
    "ORDER BY entity_key, decided_at_us, decision_id"
)


class EntityIndex:
    """Whether the store keeps entity entries apart, and how many are waiting for a merge.

    ``recent`` is the count as of the last commit: a writer computes the new count inside its
    transaction and sets it only once that has committed, so a rollback leaves it right.
    """

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled
        self.merge_rows = ENTITY_MERGE_ROWS
        self.recent = 0

    def count_recent(self, db: Connection) -> int:
        return int(db.run("SELECT COUNT(*) FROM decision_entities_recent").fetchone()[0])

    def add(self, db: Connection, rows: list[list[object]], recent: int) -> int:
        """Appends the entries of new decisions rows to the recent table, given ``recent`` there
        already, and merges once it holds ``merge_rows``; returns the recent table's new size."""
        entity, decided_at, decision_id = _ENTRY_FIELDS
        db.execute_many(
            "INSERT INTO decision_entities_recent (entity_key, decided_at_us, decision_id) "
            "VALUES (?, ?, ?)",
            [(row[entity], row[decided_at], row[decision_id]) for row in rows],
        )
        recent += len(rows)
        if recent < self.merge_rows:
            return recent
        db.run(_MERGE_RECENT)
        db.run("DELETE FROM decision_entities_recent")
        return 0

    def purge(self, db: Connection, cutoff_us: int) -> int:
        """Drops the entries of purged decisions (all decided before the cutoff); returns how
        many recent entries are left."""
        for name in ("decision_entities", "decision_entities_recent"):
            db.execute(
                f"DELETE FROM {name} WHERE decided_at_us < ? AND NOT EXISTS "
                f"(SELECT 1 FROM decisions d WHERE d.decision_id = {name}.decision_id)",
                (cutoff_us,),
            )
        return self.count_recent(db)


def entity_condition(entity_key: str, since_us: int, until_us: int) -> tuple[str, list[object]]:
    """A WHERE condition on decisions for an entity's decisions in [since, until), read from
    both entry tables, and its parameters."""
    span = "entity_key = ? AND decided_at_us >= ? AND decided_at_us < ?"
    condition = (
        f"decision_id IN (SELECT decision_id FROM decision_entities WHERE {span} "
        f"UNION ALL SELECT decision_id FROM decision_entities_recent WHERE {span})"
    )
    return condition, [entity_key, since_us, until_us] * 2
