"""The SQL store both backends share: one writer thread, one reader thread, one connection each.

A backend supplies connections and a ``Dialect``; everything else (idempotent inserts, the hash
chain, queries, purge) is the same SQL, written with ``?`` placeholders. Every call runs on the
store's own threads, never on the event loop; each connection is used only by its thread, which
serialises access without a further lock. Appends lock the one ``chain_head`` row first, so
writers in several processes on one PostgreSQL database still number entries without gaps.
"""

from __future__ import annotations

import abc
import functools
import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import orjson

from governance.chain import GENESIS, Checkpoint, link, sha256_hex
from governance.errors import DecisionNotFound, EntryConflict, MigrationError
from governance.store import decisions
from governance.store import verify as verify_chain
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
from governance.store.engine import Connection, Engine
from governance.store.entity_index import EntityIndex
from governance.store.entries import (
    DecisionFilter,
    DecisionPage,
    Outcome,
    Override,
    PurgeReport,
    RegisteredManifest,
    RouteChange,
    canonical,
)
from governance.store.hash_chain import append_entry, chain_hash_at, lock_head, move_head, read_head
from governance.store.migrations import (
    DEFERRED_ENTITY_INDEX_VERSION,
    SCHEMA_MIGRATIONS_TABLE,
    Migration,
)
from governance.store.tables import (
    SEQ_TABLES,
    ChainedTable,
    Conn,
)
from lineage.v1.record import DecisionRecord

__all__ = ["Dialect", "SqlLineageStore", "fast_decision_row", "now_us"]

log = logging.getLogger(__name__)

T = TypeVar("T")


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
        await self._engine.open(self._connect, self._prepare_schema)

    def _prepare_schema(self, db: Connection) -> None:
        applied = self._apply_migrations(db)
        if 2 in applied:
            self._chain_existing_decisions(db)
        if self._entities.enabled:
            self._entities.recent = self._entities.count_recent(db)
        log.info(
            "lineage database %s at schema version %d",
            self.describe(),
            max((m.version for m in self._migrations), default=0),
        )

    async def close(self) -> None:
        await self._engine.close()

    # -- migrations -----------------------------------------------------------------------------

    def _apply_migrations(self, db: Connection) -> list[int]:
        """Applies pending migrations in order, each in its own transaction; returns those."""
        if self.dialect.migration_lock:
            db.run(self.dialect.migration_lock)
        try:
            return self._apply_migrations_locked(db)
        finally:
            if self.dialect.migration_unlock:
                db.run(self.dialect.migration_unlock)

    def _apply_migrations_locked(self, db: Connection) -> list[int]:
        db.run(SCHEMA_MIGRATIONS_TABLE)
        applied = {
            version: checksum
            for version, checksum in db.run("SELECT version, checksum FROM schema_migrations")
        }
        known = {m.version: m for m in self._migrations}
        unknown = sorted(set(applied) - set(known))
        if unknown:
            raise MigrationError(
                f"database has schema versions {unknown} that this build does not know; "
                "it was written by a newer scoregate"
            )
        done: list[int] = []
        for migration in sorted(self._migrations, key=lambda m: m.version):
            if migration.version in applied:
                if applied[migration.version] != migration.checksum:
                    raise MigrationError(
                        f"schema migration {migration.version} ({migration.name}) differs from "
                        "the one applied to this database"
                    )
                continue
            with db.write_transaction():
                for statement in migration.statements:
                    db.run(statement)
                db.execute(
                    "INSERT INTO schema_migrations (version, name, checksum, applied_at_us) "
                    "VALUES (?, ?, ?, ?)",
                    (migration.version, migration.name, migration.checksum, now_us()),
                )
            done.append(migration.version)
            log.info("applied schema migration %d (%s)", migration.version, migration.name)
        return done

    def _chain_existing_decisions(self, db: Connection) -> None:
        """Links decisions stored before the chain existed, in the order they were stored."""
        with db.write_transaction():
            seq, chain = lock_head(db)
            rows = db.execute(
                "SELECT decision_id, record_sha256 FROM decisions WHERE seq IS NULL "
                "ORDER BY stored_at_us, decision_id",
            ).fetchall()
            for decision_id, sha in rows:
                seq += 1
                chain = link(chain, sha, seq)
                db.execute(
                    "UPDATE decisions SET seq = ?, chain_sha256 = ? WHERE decision_id = ?",
                    (seq, chain, decision_id),
                )
            move_head(db, seq, chain)
        if rows:
            log.info("linked %d decisions stored before the hash chain existed", len(rows))

    async def head(self) -> Checkpoint:
        def read(db: Connection) -> Checkpoint:
            seq, chain = read_head(db)
            return Checkpoint(seq, chain, now_us())

        return await self._engine.read(read)

    async def insert_many(self, records: Sequence[DecisionRecord]) -> InsertResult:
        if not records:
            return InsertResult()
        return await self._engine.write(
            lambda db: decisions.insert_decisions(db, self._entities, records)
        )

    async def get(self, decision_id: str) -> StoredDecision | None:
        return await self._engine.read(lambda db: decisions.get_decision(db, decision_id))

    async def schema_version(self) -> int:
        def read(db: Connection) -> int:
            (version,) = db.run(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations"
            ).fetchone()
            return int(version)

        return await self._engine.read(read)

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
                db, self._entities, selection, limit, after, descending, with_counts
            )
        )

    async def traffic_seen(self, model_name: str, decision_point: str = "") -> list[TrafficSeen]:
        return await self._engine.read(
            lambda db: decisions.traffic_seen(db, model_name, decision_point)
        )

    # -- overrides, outcomes, route changes -----------------------------------------------------

    async def add_override(self, override: Override) -> tuple[Override, bool]:
        def write(db: Connection) -> tuple[Override, bool]:
            return self._add_annotation(db, SEQ_TABLES["overrides"], override, Override)

        return await self._engine.write(write)

    async def add_outcome(self, outcome: Outcome) -> tuple[Outcome, bool]:
        def write(db: Connection) -> tuple[Outcome, bool]:
            return self._add_annotation(db, SEQ_TABLES["outcomes"], outcome, Outcome)

        return await self._engine.write(write)

    def _add_annotation(
        self, db: Connection, table: ChainedTable, entry: Any, cls: Callable[..., T]
    ) -> tuple[T, bool]:
        key = table.key
        with db.write_transaction():
            lock_head(db)  # takes the append lock before looking
            exists = db.execute(
                "SELECT 1 FROM decisions WHERE decision_id = ?", (entry.decision_id,)
            ).fetchone()
            if exists is None:
                raise DecisionNotFound(
                    f"no decision with id {entry.decision_id} in the lineage store"
                )
            row = db.execute(
                f"SELECT body, recorded_at_us, seq FROM {table.name} WHERE {key} = ?",
                (getattr(entry, key),),
            ).fetchone()
            body = entry.body()
            if row is not None:
                if orjson.loads(row[0]) != body:
                    raise EntryConflict(
                        f"{key} {getattr(entry, key)} is already recorded with different content"
                    )
                fields = {k: v for k, v in body.items() if k != "kind"}
                return cls(**fields, recorded_at_us=int(row[1]), seq=int(row[2])), False
            now = now_us()
            seq = append_entry(db, table, body, now)
        fields = {k: v for k, v in body.items() if k != "kind"}
        return cls(**fields, recorded_at_us=now, seq=seq), True

    async def add_route_change(self, change: RouteChange) -> tuple[RouteChange, bool]:
        def write(db: Connection) -> tuple[RouteChange, bool]:
            body = change.body()
            change_id = sha256_hex(canonical(body))
            with db.write_transaction():
                lock_head(db)
                row = db.execute(
                    "SELECT recorded_at_us, seq FROM route_changes WHERE change_id = ?",
                    (change_id,),
                ).fetchone()
                if row is not None:
                    return RouteChange.from_body(body, change_id, int(row[0]), int(row[1])), False
                now = now_us()
                seq = append_entry(db, SEQ_TABLES["route_changes"], body, now)
            return RouteChange.from_body(body, change_id, now, seq), True

        return await self._engine.write(write)

    async def route_changes(self, until_us: int | None = None) -> list[RouteChange]:
        def read(db: Connection) -> list[RouteChange]:
            bound = until_us if until_us is not None else 2**62
            rows = db.execute(
                "SELECT body, change_id, recorded_at_us, seq FROM route_changes "
                "WHERE changed_at_us <= ? ORDER BY changed_at_us, seq",
                (bound,),
            ).fetchall()
            return [RouteChange.from_body(orjson.loads(r[0]), r[1], r[2], r[3]) for r in rows]

        return await self._engine.read(read)

    async def route_change_at(self, at_us: int) -> RouteChange | None:
        def read(db: Connection) -> RouteChange | None:
            r = db.execute(
                "SELECT body, change_id, recorded_at_us, seq FROM route_changes "
                "WHERE changed_at_us <= ? ORDER BY changed_at_us DESC, seq DESC LIMIT 1",
                (at_us,),
            ).fetchone()
            return None if r is None else RouteChange.from_body(orjson.loads(r[0]), *r[1:])

        return await self._engine.read(read)

    # -- manifests ------------------------------------------------------------------------------

    async def put_manifest(self, manifest: RegisteredManifest) -> tuple[RegisteredManifest, bool]:
        def write(db: Connection) -> tuple[RegisteredManifest, bool]:
            with db.write_transaction():
                lock_head(db)
                found = self._get_manifest(manifest.artifact_sha256, db)
                if found is not None:
                    return found, False
                db.execute(
                    "INSERT INTO manifests (artifact_sha256, name, version, manifest_json, "
                    "registered_at_us) VALUES (?, ?, ?, ?, ?)",
                    (
                        manifest.artifact_sha256,
                        manifest.name,
                        manifest.version,
                        manifest.manifest_json,
                        manifest.registered_at_us,
                    ),
                )
            return manifest, True

        return await self._engine.write(write)

    async def get_manifest(self, artifact_sha256: str) -> RegisteredManifest | None:
        return await self._engine.read(functools.partial(self._get_manifest, artifact_sha256))

    def _get_manifest(self, artifact_sha256: str, db: Connection) -> RegisteredManifest | None:
        row = db.execute(
            "SELECT artifact_sha256, name, version, manifest_json, registered_at_us "
            "FROM manifests WHERE artifact_sha256 = ?",
            (artifact_sha256,),
        ).fetchone()
        return None if row is None else RegisteredManifest(*row)

    # -- integrity and retention ----------------------------------------------------------------

    async def verify(self, checkpoints: Sequence[Checkpoint]) -> VerifyReport:
        def read(db: Connection) -> VerifyReport:
            with db.snapshot():
                return verify_chain.verify(db, checkpoints)

        return await self._engine.read(read)

    async def purge(self, cutoff_us: int) -> PurgeReport:
        return await self._engine.write(functools.partial(self._purge, cutoff_us))

    def _purge(self, cutoff_us: int, db: Connection) -> PurgeReport:
        """Deletes the longest prefix of the chain whose entries are all older than the cutoff.

        Route changes are kept (they say what served later, too) but leave the verified part of
        the chain; everything else in the prefix is deleted. The run is appended to the chain
        with the boundary's seq and chain hash, from which ``verify`` starts afterwards.
        """
        recent = self._entities.recent
        with db.write_transaction():
            head_seq, _ = lock_head(db)
            previous = db.execute(
                "SELECT boundary_seq, boundary_chain_sha256 FROM purges ORDER BY seq DESC LIMIT 1",
            ).fetchone()
            boundary, boundary_chain = (0, GENESIS) if previous is None else previous
            first_young = head_seq + 1
            for table in SEQ_TABLES.values():
                if not table.purged:
                    continue
                (young,) = db.execute(
                    f"SELECT MIN(seq) FROM {table.name} WHERE {table.time_column} >= ?",
                    (cutoff_us,),
                ).fetchone()
                if young is not None:
                    first_young = min(first_young, int(young))
            deleted: dict[str, int] = {}
            if first_young - 1 > boundary:
                boundary = first_young - 1
                boundary_chain = chain_hash_at(db, boundary)
                for table in SEQ_TABLES.values():
                    if table.purged:
                        cursor = db.execute(f"DELETE FROM {table.name} WHERE seq <= ?", (boundary,))
                        deleted[table.name] = max(int(cursor.rowcount), 0)
                if self._entities.enabled:
                    recent = self._entities.purge(db, cutoff_us)
            run_at = now_us()
            report = PurgeReport("", run_at, cutoff_us, boundary, boundary_chain, deleted)
            body = report.body()
            seq = append_entry(db, SEQ_TABLES["purges"], body, run_at)
        self._entities.recent = recent
        purge_id = sha256_hex(canonical(body))
        return PurgeReport(purge_id, run_at, cutoff_us, boundary, boundary_chain, deleted, seq)
