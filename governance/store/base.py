"""The lineage store's interface: what the receiver and the query service need from a backend.

Both backends (SQLite, PostgreSQL) keep the same schema and the same semantics: a record is
stored once per decision id and never overwritten, and ``insert_many`` returns only after the
batch is durable, because the OTLP sender treats the Export's answer as the acknowledgement.
Every appended fact is linked into one hash chain (``governance.chain``).
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from governance.chain import Checkpoint
from governance.store.entries import (
    AccessEntry,
    AccessFilter,
    AccessPage,
    Approval,
    DecisionFilter,
    DecisionPage,
    DecisionSummary,
    Outcome,
    Override,
    PurgeReport,
    RegisteredManifest,
    RouteChange,
)
from lineage.v1.record import DecisionRecord

if TYPE_CHECKING:
    from governance.monitoring.arms import ArmGroup
    from governance.store.drift_counts import WindowCounts


@dataclass(frozen=True, slots=True)
class StoredDecision:
    """A record as the store holds it: when it was stored (UTC microseconds), its place in the
    chain, and the overrides and outcomes recorded for it since."""

    record: DecisionRecord
    stored_at_us: int
    seq: int = 0
    chain_sha256: str = ""
    overrides: tuple[Override, ...] = ()
    outcomes: tuple[Outcome, ...] = ()
    record_sha256: str = ""
    """The sha256 of the JSON as stored (a record from before a field existed lacks it)."""


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


@dataclass(frozen=True, slots=True)
class TrafficSeen:
    """Decisions actually made by one model version on one arm of one decision point."""

    decision_point: str
    model_version: str
    arm: str
    first_us: int
    last_us: int
    count: int


@dataclass(slots=True)
class VerifyReport:
    """What ``verify`` found: ``problem`` is empty when the store matches its chain and
    checkpoints; otherwise it names the first bad entry (``bad_seq``, 0 when not one entry)."""

    checked: int = 0
    head: Checkpoint | None = None
    boundary_seq: int = 0
    checkpoints_checked: int = 0
    checkpoints_skipped: int = 0
    bad_seq: int = 0
    problem: str = ""

    @property
    def ok(self) -> bool:
        return not self.problem


class LineageStore(abc.ABC):
    """Durable, idempotent storage of decision records; every method is safe on the event loop."""

    @abc.abstractmethod
    async def open(self) -> None:
        """Connects and applies pending schema migrations."""

    @abc.abstractmethod
    def describe(self) -> str:
        """Where the data lives, for logs (no credentials)."""

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
        """The stored record for a canonical decision id, with its overrides and outcomes."""

    @abc.abstractmethod
    async def schema_version(self) -> int:
        """The highest migration version applied to the database."""

    @abc.abstractmethod
    async def add_override(self, override: Override) -> tuple[Override, bool]:
        """Appends an override (or finds the same one); True when it was new.

        DecisionNotFound for an unknown decision, EntryConflict for a reused id."""

    @abc.abstractmethod
    async def add_outcome(self, outcome: Outcome) -> tuple[Outcome, bool]:
        """As ``add_override``, for an outcome."""

    @abc.abstractmethod
    async def add_route_change(self, change: RouteChange) -> tuple[RouteChange, bool]:
        """Appends a route change, identified by its content; True when it was new."""

    @abc.abstractmethod
    async def route_changes(self, until_us: int | None = None) -> list[RouteChange]:
        """Route changes effective at or before ``until_us`` (all if None), oldest first."""

    @abc.abstractmethod
    async def route_change_at(self, at_us: int) -> RouteChange | None:
        """The route change in force at ``at_us``: the latest effective at or before it."""

    @abc.abstractmethod
    async def list_decisions(
        self,
        selection: DecisionFilter,
        limit: int,
        after: tuple[int, str] | None = None,
        *,
        descending: bool = False,
        with_counts: bool = True,
    ) -> DecisionPage:
        """Decisions in the selection ordered by (decided_at, id), after a keyset position,
        with counts over the whole selection."""

    @abc.abstractmethod
    async def window_counts(
        self, decision_point: str, since_us: int, until_us: int
    ) -> list[WindowCounts]:
        """The monitoring counters of every version and arm of ``decision_point`` summed over
        the hours starting in [since, until) (``governance.monitoring``)."""

    @abc.abstractmethod
    async def labelled_decisions(
        self, decision_point: str, since_us: int, until_us: int
    ) -> list[tuple[str, str, str, float, str]]:
        """(model, version, arm, score, label) of the model decisions of ``decision_point``
        decided in [since, until) that have an outcome (the latest of each)."""

    @abc.abstractmethod
    async def arm_groups(self, decision_point: str, since_us: int, until_us: int) -> list[ArmGroup]:
        """The primary, canary and fallback decisions of ``decision_point`` decided in
        [since, until), grouped for ``governance.monitoring.arms``."""

    @abc.abstractmethod
    async def counted_points(self, since_us: int) -> list[str]:
        """The decision points with monitoring counters in the hours from ``since_us`` on."""

    @abc.abstractmethod
    async def list_shadows(self, decision_id: str) -> list[DecisionSummary] | None:
        """The shadow decisions of a canonical decision id (``extra.parent_decision_id``), by
        (decided_at, id), found by index; None when neither it nor a shadow of it is stored."""

    @abc.abstractmethod
    async def traffic_seen(self, model_name: str, decision_point: str = "") -> list[TrafficSeen]:
        """Per decision point, version and arm: first and last decision and how many."""

    @abc.abstractmethod
    async def put_manifest(self, manifest: RegisteredManifest) -> tuple[RegisteredManifest, bool]:
        """Keeps a manifest by artifact sha256 (the first one stands); True when it was new."""

    @abc.abstractmethod
    async def get_manifest(self, artifact_sha256: str) -> RegisteredManifest | None:
        """The manifest registered for an artifact, or None."""

    @abc.abstractmethod
    async def manifests_named(self, name: str, version: str) -> list[RegisteredManifest]:
        """The manifests registered under a model name and version, oldest first."""

    @abc.abstractmethod
    async def add_approval(self, approval: Approval) -> Approval:
        """Appends an approval or a revocation to the chain; returns it with its place."""

    @abc.abstractmethod
    async def approvals_for(self, artifact_sha256: str) -> list[Approval]:
        """Every approval and revocation of an artifact, in chain order."""

    @abc.abstractmethod
    async def head(self) -> Checkpoint:
        """The chain's current size and head hash, as a checkpoint taken now."""

    @abc.abstractmethod
    async def verify(self, checkpoints: Sequence[Checkpoint]) -> VerifyReport:
        """Recomputes the chain over every entry and compares it with the checkpoints."""

    @abc.abstractmethod
    async def purge(self, cutoff_us: int) -> PurgeReport:
        """Deletes the oldest chain entries older than ``cutoff_us`` and records the run."""

    @abc.abstractmethod
    async def append_access(self, entries: Sequence[AccessEntry]) -> int:
        """Appends access-log entries to the chain in one transaction; returns the last seq."""

    @abc.abstractmethod
    async def list_access(
        self, selection: AccessFilter, limit: int, after_seq: int = 0
    ) -> AccessPage:
        """Access-log entries in the selection, oldest first, after chain position
        ``after_seq``; ``next_page_token`` is set when there are more."""
