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
import hashlib
import logging
import operator
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import orjson

from governance.chain import GENESIS, Checkpoint, link, sha256_hex
from governance.errors import DecisionNotFound, EntryConflict, MigrationError, StoreUnavailable
from governance.store import verify as verify_chain
from governance.store.base import (
    Conflict,
    InsertResult,
    LineageStore,
    StoredDecision,
    TrafficSeen,
    VerifyReport,
)
from governance.store.clock import now_us
from governance.store.dialect import Dialect
from governance.store.engine import Connection, Engine
from governance.store.entries import (
    Count,
    DecisionFilter,
    DecisionPage,
    DecisionSummary,
    Outcome,
    Override,
    PurgeReport,
    RegisteredManifest,
    RouteChange,
    canonical,
)
from governance.store.migrations import (
    DEFERRED_ENTITY_INDEX_VERSION,
    SCHEMA_MIGRATIONS_TABLE,
    Migration,
)
from governance.store.tables import (
    DECISION_COLUMNS,
    SEQ_TABLES,
    ChainedTable,
    Conn,
)
from lineage.v1.record import DecisionRecord, canonical_json, record_from_json

__all__ = ["Dialect", "SqlLineageStore", "fast_decision_row", "now_us"]

log = logging.getLogger(__name__)

T = TypeVar("T")

# Well under SQLite's bound-parameter limit.
_LOOKUP_CHUNK = 500
# Entity entries gathered in decision_entities_recent before a merge. A merge rewrites each leaf
# of decision_entities once, so more per merge means fewer bytes per record; entity queries scan
# the recent table (no index there): ~0.5 ms per 10,000 entries, measured.
ENTITY_MERGE_ROWS = 20_000
_ENTITY_FIELDS = tuple(
    DECISION_COLUMNS.index(c) for c in ("entity_key", "decided_at_us", "decision_id")
)
_MERGE_ENTITIES = (
    "INSERT OR IGNORE INTO decision_entities (entity_key, decided_at_us, decision_id) "
    "SELECT entity_key, decided_at_us, decision_id FROM decision_entities_recent "
    "ORDER BY entity_key, decided_at_us, decision_id"
)
_SUMMARY_COLUMNS = (
    "decision_id, decided_at_us, decision_point, entity_key, model_name, model_version, arm, "
    "score, decision"
)


# The decisions columns copied from the record, in DECISION_COLUMNS order up to stored_at_us.
_ROW_FIELDS = DECISION_COLUMNS[: DECISION_COLUMNS.index("stored_at_us")]
_row_values = operator.attrgetter(*_ROW_FIELDS)
assert DECISION_COLUMNS[len(_ROW_FIELDS) :] == ("stored_at_us", "record_sha256", "record_json")


def fast_decision_row(record: DecisionRecord, stored_at_us: int) -> list[object]:
    """``tables.decision_row``'s exact row in one native orjson pass, without ``asdict``'s deep
    copy (a test holds the two equal; ``verify`` re-derives rows with ``decision_row``)."""
    body = canonical_json(record)
    return [
        *_row_values(record),
        stored_at_us,
        hashlib.sha256(body).hexdigest(),
        body.decode(),
    ]


class SqlLineageStore(LineageStore):
    """The store over any connection the backend opens; see the module docstring."""

    def __init__(self, dialect: Dialect, migrations: Sequence[Migration]) -> None:
        self.dialect = dialect
        self._migrations = migrations
        self._engine = Engine(dialect)
        # The backend keeps entity entries apart and this build's schema has them (a store opened
        # with fewer migrations, as the upgrade tests do, has the older index instead).
        self._deferred_entities = dialect.deferred_entity_index and any(
            m.version == DEFERRED_ENTITY_INDEX_VERSION for m in migrations
        )
        self.entity_merge_rows = ENTITY_MERGE_ROWS
        # Rows in decision_entities_recent (deferred_entity_index), as of the last commit.
        self._recent_entities = 0

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
        if self._deferred_entities:
            self._recent_entities = self._count_recent_entities(db)
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
            seq, chain = self._head(db)
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
            self._set_head(db, seq, chain)
        if rows:
            log.info("linked %d decisions stored before the hash chain existed", len(rows))

    # -- the chain ------------------------------------------------------------------------------

    def _head(self, db: Connection) -> tuple[int, str]:
        row = db.run(
            "SELECT seq, chain_sha256 FROM chain_head WHERE id = 1" + self.dialect.lock_suffix
        ).fetchone()
        return int(row[0]), str(row[1])

    def _set_head(self, db: Connection, seq: int, chain: str) -> None:
        db.execute("UPDATE chain_head SET seq = ?, chain_sha256 = ? WHERE id = 1", (seq, chain))

    def _append(self, db: Connection, table: ChainedTable, body: dict[str, Any], now: int) -> int:
        """Appends one entry inside the caller's write transaction; returns its seq."""
        seq, chain = self._head(db)
        data = canonical(body)
        sha = sha256_hex(data)
        seq += 1
        chain = link(chain, sha, seq)
        row = table.row(body, sha, now, seq, chain, data.decode())
        marks = ", ".join("?" * len(row))
        db.execute(f"INSERT INTO {table.name} ({', '.join(table.columns)}) VALUES ({marks})", row)
        self._set_head(db, seq, chain)
        return seq

    async def head(self) -> Checkpoint:
        def read(db: Connection) -> Checkpoint:
            seq, chain = self._head_unlocked(db)
            return Checkpoint(seq, chain, now_us())

        return await self._engine.read(read)

    def _head_unlocked(self, db: Connection) -> tuple[int, str]:
        row = db.run("SELECT seq, chain_sha256 FROM chain_head WHERE id = 1").fetchone()
        return int(row[0]), str(row[1])

    # -- decisions ------------------------------------------------------------------------------

    async def insert_many(self, records: Sequence[DecisionRecord]) -> InsertResult:
        if not records:
            return InsertResult()
        return await self._engine.write(functools.partial(self._insert, records))

    def _insert(self, records: Sequence[DecisionRecord], db: Connection) -> InsertResult:
        result = InsertResult()
        stored_at = now_us()
        sha_index = DECISION_COLUMNS.index("record_sha256")
        batch: dict[str, list[object]] = {}
        for record in records:
            row = fast_decision_row(record, stored_at)
            earlier = batch.get(record.decision_id)
            if earlier is None:
                batch[record.decision_id] = row
            else:
                _count_repeat(
                    result, record.decision_id, str(earlier[sha_index]), str(row[sha_index])
                )
        columns = (*DECISION_COLUMNS, "seq", "chain_sha256")
        insert = (
            f"INSERT INTO decisions ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        )
        with db.write_transaction():
            head_seq, head_chain = self._head(db)
            new = self._insert_fresh(db, insert, batch, head_seq, head_chain)
            if new is None:
                # Some ids are stored already: look them up and link only the others.
                stored = self._stored_hashes(db, list(batch))
                new = []
                seq, chain = head_seq, head_chain
                for decision_id, row in batch.items():
                    if decision_id in stored:
                        _count_repeat(result, decision_id, stored[decision_id], str(row[sha_index]))
                        continue
                    seq += 1
                    chain = link(chain, str(row[sha_index]), seq)
                    new.append([*row, seq, chain])
                if new:
                    db.execute_many(insert, new)
            recent = self._recent_entities
            if new:
                self._set_head(db, head_seq + len(new), str(new[-1][-1]))
                if self._deferred_entities:
                    recent = self._index_entities(db, new, recent)
        self._recent_entities = recent
        result.inserted = len(new)
        return result

    def _index_entities(self, db: Connection, new: list[list[object]], recent: int) -> int:
        """Appends the new decisions' entity entries to decision_entities_recent and, once it
        holds ``entity_merge_rows``, merges it into decision_entities; returns its new size."""
        ent, at, did = _ENTITY_FIELDS
        db.execute_many(
            "INSERT INTO decision_entities_recent (entity_key, decided_at_us, decision_id) "
            "VALUES (?, ?, ?)",
            [(row[ent], row[at], row[did]) for row in new],
        )
        recent += len(new)
        if recent < self.entity_merge_rows:
            return recent
        db.run(_MERGE_ENTITIES)
        db.run("DELETE FROM decision_entities_recent")
        return 0

    @staticmethod
    def _count_recent_entities(db: Connection) -> int:
        return int(db.run("SELECT COUNT(*) FROM decision_entities_recent").fetchone()[0])

    def _insert_fresh(
        self, db: Connection, insert: str, batch: dict[str, list[object]], seq: int, chain: str
    ) -> list[list[object]] | None:
        """The common case without a lookup: inserts every row of ``batch`` as new, linked after
        (seq, chain). If any id is already stored, undoes that and returns None instead."""
        if not self.dialect.conflict_errors:
            return None
        sha_index = DECISION_COLUMNS.index("record_sha256")
        new: list[list[object]] = []
        for row in batch.values():
            seq += 1
            chain = link(chain, str(row[sha_index]), seq)
            new.append([*row, seq, chain])
        db.run("SAVEPOINT insert_fresh")
        try:
            db.execute_many(insert, new)
        except self.dialect.conflict_errors:
            db.run("ROLLBACK TO SAVEPOINT insert_fresh")
            db.run("RELEASE SAVEPOINT insert_fresh")
            return None
        db.run("RELEASE SAVEPOINT insert_fresh")
        return new

    def _stored_hashes(self, db: Connection, ids: list[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for start in range(0, len(ids), _LOOKUP_CHUNK):
            chunk = ids[start : start + _LOOKUP_CHUNK]
            marks = ", ".join("?" * len(chunk))
            found.update(
                db.execute(
                    "SELECT decision_id, record_sha256 FROM decisions "
                    f"WHERE decision_id IN ({marks})",
                    chunk,
                ).fetchall()
            )
        return found

    async def get(self, decision_id: str) -> StoredDecision | None:
        return await self._engine.read(functools.partial(self._get, decision_id))

    def _get(self, decision_id: str, db: Connection) -> StoredDecision | None:
        row = db.execute(
            "SELECT record_json, stored_at_us, seq, chain_sha256 FROM decisions "
            "WHERE decision_id = ?",
            (decision_id,),
        ).fetchone()
        if row is None:
            return None
        overrides = tuple(
            Override(*r)
            for r in db.execute(
                "SELECT override_id, decision_id, reviewer, at_us, new_decision, reason, "
                "recorded_at_us, seq FROM overrides WHERE decision_id = ? ORDER BY at_us, seq",
                (decision_id,),
            ).fetchall()
        )
        outcomes = tuple(
            Outcome(*r)
            for r in db.execute(
                "SELECT outcome_id, decision_id, label, at_us, source, recorded_at_us, seq "
                "FROM outcomes WHERE decision_id = ? ORDER BY at_us, seq",
                (decision_id,),
            ).fetchall()
        )
        return StoredDecision(
            record_from_json(row[0]),
            int(row[1]),
            int(row[2] or 0),
            str(row[3] or ""),
            overrides,
            outcomes,
        )

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
        fn = functools.partial(self._list, selection, limit, after, descending, with_counts)
        return await self._engine.read(fn)

    def _list(
        self,
        s: DecisionFilter,
        limit: int,
        after: tuple[int, str] | None,
        descending: bool,
        with_counts: bool,
        db: Connection,
    ) -> DecisionPage:
        where = ["decided_at_us >= ?", "decided_at_us < ?"]
        params: list[object] = [s.since_us, s.until_us]
        if s.entity_key and self._deferred_entities:
            span = "entity_key = ? AND decided_at_us >= ? AND decided_at_us < ?"
            where.append(
                f"decision_id IN (SELECT decision_id FROM decision_entities WHERE {span} "
                f"UNION ALL SELECT decision_id FROM decision_entities_recent WHERE {span})"
            )
            params += [s.entity_key, s.since_us, s.until_us] * 2
        for column, value in (
            ("entity_key", s.entity_key),
            ("model_name", s.model_name),
            ("model_version", s.model_version),
            ("decision_point", s.decision_point),
        ):
            if value:
                where.append(f"{column} = ?")
                params.append(value)
        condition = " AND ".join(where)
        page = DecisionPage()
        if with_counts:
            page.counts = [
                Count(*r)
                for r in db.execute(
                    "SELECT model_name, model_version, arm, decision, COUNT(*) FROM decisions "
                    f"WHERE {condition} GROUP BY model_name, model_version, arm, decision "
                    "ORDER BY model_name, model_version, arm, decision",
                    params,
                ).fetchall()
            ]
        if limit <= 0:
            return page
        keyset = ""
        page_params = list(params)
        op, order = ("<", "DESC") if descending else (">", "ASC")
        if after is not None:
            keyset = f" AND (decided_at_us {op} ? OR (decided_at_us = ? AND decision_id {op} ?))"
            page_params += [after[0], after[0], after[1]]
        rows = db.execute(
            f"SELECT {_SUMMARY_COLUMNS} FROM decisions WHERE {condition}{keyset} "
            f"ORDER BY decided_at_us {order}, decision_id {order} LIMIT ?",
            [*page_params, limit + 1],
        ).fetchall()
        page.decisions = [DecisionSummary(*r) for r in rows[:limit]]
        if len(rows) > limit:
            last = page.decisions[-1]
            page.next_page_token = f"{last.decided_at_us}/{last.decision_id}"
        return page

    async def traffic_seen(self, model_name: str, decision_point: str = "") -> list[TrafficSeen]:
        def read(db: Connection) -> list[TrafficSeen]:
            extra, params = ("", [model_name])
            if decision_point:
                extra, params = (" AND decision_point = ?", [model_name, decision_point])
            rows = db.execute(
                "SELECT decision_point, model_version, arm, MIN(decided_at_us), "
                "MAX(decided_at_us), COUNT(*) FROM decisions WHERE model_name = ?"
                f"{extra} GROUP BY decision_point, model_version, arm "
                "ORDER BY decision_point, MIN(decided_at_us)",
                params,
            ).fetchall()
            return [TrafficSeen(*r) for r in rows]

        return await self._engine.read(read)

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
            self._head(db)  # takes the append lock before looking
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
            seq = self._append(db, table, body, now)
        fields = {k: v for k, v in body.items() if k != "kind"}
        return cls(**fields, recorded_at_us=now, seq=seq), True

    async def add_route_change(self, change: RouteChange) -> tuple[RouteChange, bool]:
        def write(db: Connection) -> tuple[RouteChange, bool]:
            body = change.body()
            change_id = sha256_hex(canonical(body))
            with db.write_transaction():
                self._head(db)
                row = db.execute(
                    "SELECT recorded_at_us, seq FROM route_changes WHERE change_id = ?",
                    (change_id,),
                ).fetchone()
                if row is not None:
                    return RouteChange.from_body(body, change_id, int(row[0]), int(row[1])), False
                now = now_us()
                seq = self._append(db, SEQ_TABLES["route_changes"], body, now)
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
                self._head(db)
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
        recent = self._recent_entities
        with db.write_transaction():
            head_seq, _ = self._head(db)
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
                boundary_chain = self._chain_at(db, boundary)
                for table in SEQ_TABLES.values():
                    if table.purged:
                        cursor = db.execute(f"DELETE FROM {table.name} WHERE seq <= ?", (boundary,))
                        deleted[table.name] = max(int(cursor.rowcount), 0)
                if self._deferred_entities:
                    recent = self._purge_entities(db, cutoff_us)
            run_at = now_us()
            report = PurgeReport("", run_at, cutoff_us, boundary, boundary_chain, deleted)
            body = report.body()
            seq = self._append(db, SEQ_TABLES["purges"], body, run_at)
        self._recent_entities = recent
        purge_id = sha256_hex(canonical(body))
        return PurgeReport(purge_id, run_at, cutoff_us, boundary, boundary_chain, deleted, seq)

    def _purge_entities(self, db: Connection, cutoff_us: int) -> int:
        """Drops the entity entries of purged decisions (all decided before the cutoff); returns
        how many recent entries are left."""
        for name in ("decision_entities", "decision_entities_recent"):
            db.execute(
                f"DELETE FROM {name} WHERE decided_at_us < ? AND NOT EXISTS "
                f"(SELECT 1 FROM decisions d WHERE d.decision_id = {name}.decision_id)",
                (cutoff_us,),
            )
        return self._count_recent_entities(db)

    def _chain_at(self, db: Connection, seq: int) -> str:
        for table in SEQ_TABLES.values():
            row = db.execute(
                f"SELECT chain_sha256 FROM {table.name} WHERE seq = ?", (seq,)
            ).fetchone()
            if row is not None:
                return str(row[0])
        raise StoreUnavailable(f"chain entry {seq} is missing; run scoregate lineage verify")


def _count_repeat(result: InsertResult, decision_id: str, stored: str, offered: str) -> None:
    if stored == offered:
        result.duplicates += 1
    else:
        result.conflicts.append(Conflict(decision_id, stored, offered))
