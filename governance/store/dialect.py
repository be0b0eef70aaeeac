"""What differs between the backends' SQL; the shared SQL is written once, for SQLite's forms."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Dialect:
    """One backend's placeholders, transaction statements, locks and errors."""

    name: str
    placeholder: str
    begin_write: str
    begin_snapshot: str
    lock_suffix: str
    # Every error of the backend's database; those not in ``data_errors`` leave the store as
    # StoreUnavailable (retried), those in it as UnstorableData (permanent, never retried).
    errors: tuple[type[BaseException], ...]
    migration_lock: str = ""
    migration_unlock: str = ""
    # What a unique-key violation raises; empty: inserts look up stored ids first.
    conflict_errors: tuple[type[BaseException], ...] = ()
    # What the database (or its driver, binding a value) raises for a value it can never hold,
    # such as NUL in PostgreSQL's text or an integer beyond SQLite's 64 bits: an error of the data,
    # the same every time, not of the database's state.
    data_errors: tuple[type[BaseException], ...] = ()
    # Entity entries kept in decision_entities(_recent) and merged in bulk (migration 4, SQLite)
    # rather than by an index on decisions.
    deferred_entity_index: bool = False

    def with_placeholders(self, sql: str) -> str:
        """``sql``, written with ``?`` placeholders, in this backend's placeholder style."""
        return sql if self.placeholder == "?" else sql.replace("?", self.placeholder)
