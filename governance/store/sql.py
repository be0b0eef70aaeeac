"""The SQL store both backends share: ``LineageStore`` over a backend's connections and dialect.

Each call runs one function of a connection on the store's writer or reader thread (``engine``);
those functions are the same SQL for both backends, written with ``?`` placeholders, and live by
concern: ``decisions`` (with SQLite's ``entity_index``), ``links`` (a decision's shadows),
``facts`` (overrides, outcomes, route changes, manifests), ``hash_chain`` (the head every append
locks) and ``maintenance`` (migrations, purge). A backend adds only how it connects and its
``Dialect``.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Sequence

from governance.chain import Checkpoint
from governance.monitoring.arms import ArmGroup
from governance.store import access_log, decisions, drift_backfill, facts, links, maintenance
from governance.store import verify as verify_chain
from governance.store.arm_groups import arm_groups
from governance.store.base import (
    InsertResult,
    LineageStore,
    StoredDecision,
    TrafficSeen,
    VerifyReport,
)
from governance.store.clock import now_us
from governance.store.decisions import fast_decision_row
from governance.store.dialect import Dialect
from governance.store.drift_backfill import BackfillProgress
from governance.store.drift_counts import (
    DriftCounter,
    WindowCounts,
    counted_points,
    labelled_decisions,
    window_counts,
)
from governance.store.engine import Connection, Engine
from governance.store.entity_index import EntityIndex
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
from governance.store.hash_chain import read_head
from governance.store.migrations import (
    DEFERRED_ENTITY_INDEX_VERSION,
    DRIFT_COUNTS_VERSION,
    REASON_INDEX_VERSION,
    Migration,
)
from governance.store.reason_index import ReasonIndex
from governance.store.tables import Conn
from lineage.v1.record import DecisionRecord

__all__ = ["Dialect", "SqlLineageStore", "fast_decision_row", "now_us"]

log = logging.getLogger(__name__)


class SqlLineageStore(LineageStore):
    """The store over any connection the backend opens; see the module docstring."""

    def __init__(self, dialect: Dialect, migrations: Sequence[Migration]) -> None:
        self.dialect = dialect
        self._migrations = migrations
        self._engine = Engine(dialect)
        # The backend keeps entity entries apart and this build's schema has them (a store opened
        # with fewer migrations, as the upgrade tests do, has the older index instead).
        self._entities = EntityIndex(
            enabled=dialect.deferred_entity_index
            and any(m.version == DEFERRED_ENTITY_INDEX_VERSION for m in migrations)
        )
        self._reasons = ReasonIndex(
            enabled=any(m.version == REASON_INDEX_VERSION for m in migrations)
        )
        self._drift = DriftCounter(
            enabled=any(m.version == DRIFT_COUNTS_VERSION for m in migrations)
        )

    @property
    def entity_merge_rows(self) -> int:
        """Entity entries gathered before a merge (SQLite); tests lower it to see merges."""
        return self._entities.merge_rows

    @entity_merge_rows.setter
    def entity_merge_rows(self, rows: int) -> None:
        self._entities.merge_rows = rows

    @abc.abstractmethod
    def _connect(self, *, read_only: bool) -> Conn:
        """A new connection in autocommit mode; transactions are begun explicitly."""

    @abc.abstractmethod
    def describe(self) -> str:
        """Where the data lives, for logs (no credentials)."""

    async def open(self) -> None:
        await self._engine.open(self._connect, self._prepare)

    def _prepare(self, db: Connection) -> None:
        maintenance.prepare_schema(db, self._migrations)
        if self._entities.enabled:
            self._entities.recent = self._entities.count_recent(db)
        log.info(
            "lineage database %s at schema version %d",
            self.describe(),
            max((m.version for m in self._migrations), default=0),
        )

    async def close(self) -> None:
        await self._engine.close()

    async def schema_version(self) -> int:
        return await self._engine.read(maintenance.schema_version)

    async def head(self) -> Checkpoint:
        def read(db: Connection) -> Checkpoint:
            seq, chain = read_head(db)
            return Checkpoint(seq, chain, now_us())

        return await self._engine.read(read)

    # -- decisions ------------------------------------------------------------------------------

    async def insert_many(self, records: Sequence[DecisionRecord]) -> InsertResult:
        if not records:
            return InsertResult()
        return await self._engine.write(
            lambda db: decisions.insert_decisions(
                db, self._entities, self._reasons, records, self._drift
            )
        )

    async def backfill_drift(self, limit: int) -> BackfillProgress:
        """Counts the next ``limit`` decisions stored before the monitoring counters existed
        (``drift_backfill``); the progress after it."""
        return await self._engine.write(
            lambda db: drift_backfill.backfill_batch(db, self._drift, limit)
        )

    async def get(self, decision_id: str) -> StoredDecision | None:
        return await self._engine.read(lambda db: decisions.get_decision(db, decision_id))

    async def list_decisions(
        self,
        selection: DecisionFilter,
        limit: int,
        after: tuple[int, str] | None = None,
        *,
        descending: bool = False,
        with_counts: bool = True,
    ) -> DecisionPage:
        return await self._engine.read(
            lambda db: decisions.list_decisions(
                db, self._entities, self._reasons, selection, limit, after, descending, with_counts
            )
        )

    async def window_counts(
        self, decision_point: str, since_us: int, until_us: int
    ) -> list[WindowCounts]:
        return await self._engine.read(
            lambda db: window_counts(db, decision_point, since_us, until_us)
        )

    async def labelled_decisions(
        self, decision_point: str, since_us: int, until_us: int
    ) -> list[tuple[str, str, str, float, str]]:
        return await self._engine.read(
            lambda db: labelled_decisions(db, decision_point, since_us, until_us)
        )

    async def arm_groups(self, decision_point: str, since_us: int, until_us: int) -> list[ArmGroup]:
        name = self.dialect.name
        return await self._engine.read(
            lambda db: arm_groups(db, name, decision_point, since_us, until_us)
        )

    async def counted_points(self, since_us: int) -> list[str]:
        return await self._engine.read(lambda db: counted_points(db, since_us))

    async def list_shadows(self, decision_id: str) -> list[DecisionSummary] | None:
        return await self._engine.read(lambda db: links.shadows_of(db, decision_id))

    async def traffic_seen(self, model_name: str, decision_point: str = "") -> list[TrafficSeen]:
        return await self._engine.read(
            lambda db: decisions.traffic_seen(db, model_name, decision_point)
        )

    # -- overrides, outcomes, route changes, manifests ------------------------------------------

    async def add_override(self, override: Override) -> tuple[Override, bool]:
        return await self._engine.write(lambda db: facts.add_override(db, override))

    async def add_outcome(self, outcome: Outcome) -> tuple[Outcome, bool]:
        return await self._engine.write(lambda db: facts.add_outcome(db, outcome))

    async def add_route_change(self, change: RouteChange) -> tuple[RouteChange, bool]:
        return await self._engine.write(lambda db: facts.add_route_change(db, change))

    async def route_changes(self, until_us: int | None = None) -> list[RouteChange]:
        return await self._engine.read(lambda db: facts.route_changes(db, until_us))

    async def route_change_at(self, at_us: int) -> RouteChange | None:
        return await self._engine.read(lambda db: facts.route_change_at(db, at_us))

    async def put_manifest(self, manifest: RegisteredManifest) -> tuple[RegisteredManifest, bool]:
        return await self._engine.write(lambda db: facts.put_manifest(db, manifest))

    async def get_manifest(self, artifact_sha256: str) -> RegisteredManifest | None:
        return await self._engine.read(lambda db: facts.get_manifest(db, artifact_sha256))

    async def manifests_named(self, name: str, version: str) -> list[RegisteredManifest]:
        return await self._engine.read(lambda db: facts.manifests_named(db, name, version))

    async def add_approval(self, approval: Approval) -> Approval:
        return await self._engine.write(lambda db: facts.add_approval(db, approval))

    async def approvals_for(self, artifact_sha256: str) -> list[Approval]:
        return await self._engine.read(lambda db: facts.approvals_for(db, artifact_sha256))

    # -- access log -----------------------------------------------------------------------------
    async def append_access(self, entries: Sequence[AccessEntry]) -> int:
        return await self._engine.write(lambda db: access_log.append_access(db, entries))

    async def list_access(
        self, selection: AccessFilter, limit: int, after_seq: int = 0
    ) -> AccessPage:
        return await self._engine.read(
            lambda db: access_log.list_access(db, selection, limit, after_seq)
        )

    # -- integrity and retention ----------------------------------------------------------------

    async def verify(self, checkpoints: Sequence[Checkpoint]) -> VerifyReport:
        def read(db: Connection) -> VerifyReport:
            with db.snapshot():
                return verify_chain.verify(db, checkpoints, self._reasons.enabled)

        return await self._engine.read(read)

    async def purge(self, cutoff_us: int) -> PurgeReport:
        return await self._engine.write(
            lambda db: maintenance.purge(db, self._entities, self._reasons, cutoff_us)
        )
