"""The lineage store's interface: what the receiver and the query service need from a backend.

Backends (SQLite now, PostgreSQL next) keep the same schema and the same semantics: a record is
stored once per decision id and never overwritten, and ``insert_many`` returns only after the
batch is durable, because the OTLP sender treats the Export's answer as the acknowledgement.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field

from governance.record import DecisionRecord


@dataclass(frozen=True, slots=True)
class StoredDecision:
    """A record as the store holds it, with when it was stored (UTC microseconds)."""

    record: DecisionRecord
    stored_at_us: int


@dataclass(frozen=True, slots=True)
class Conflict:
    """A record whose id is already stored with different content; the stored one is kept."""

    decision_id: str
    stored_sha256: str
    offered_sha256: str


@dataclass(slots=True)
class InsertResult:
    """What one ``insert_many`` did, record by record."""

    inserted: int = 0
    duplicates: int = 0
    conflicts: list[Conflict] = field(default_factory=list)


class LineageStore(abc.ABC):
    """Durable, idempotent storage of decision records; every method is safe on the event loop."""

    @abc.abstractmethod
    async def open(self) -> None:
        """Connects and applies pending schema migrations."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Closes connections; the store cannot be used afterwards."""

    @abc.abstractmethod
    async def insert_many(self, records: Sequence[DecisionRecord]) -> InsertResult:
        """Stores new records in one transaction, committed before this returns.

        Records whose decision id is already stored with the same content count as duplicates;
        with different content they are reported as conflicts and not written. Raises
        StoreUnavailable when the database cannot be written (the sender should retry).
        """

    @abc.abstractmethod
    async def get(self, decision_id: str) -> StoredDecision | None:
        """The stored record for a canonical decision id, or None."""

    @abc.abstractmethod
    async def schema_version(self) -> int:
        """The highest migration version applied to the database."""
