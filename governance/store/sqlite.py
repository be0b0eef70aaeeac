"""SQLite backend: one writer thread with one connection, one reader thread with another.

Durability: WAL with ``synchronous=FULL``, so a committed batch survives a process crash and a
power loss; ``insert_many`` returns only after COMMIT, and the OTLP receiver answers the sender only
after that. All SQLite calls run on the two dedicated threads, never on the event loop; each
connection is used only by its own thread, which serialises access without a further lock.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from governance.errors import MigrationError, StoreUnavailable
from governance.record import DecisionRecord, canonical_record_json, record_from_json
from governance.store.base import Conflict, InsertResult, LineageStore, StoredDecision
from governance.store.migrations import SCHEMA_MIGRATIONS_TABLE, SQLITE_MIGRATIONS, Migration

log = logging.getLogger(__name__)

T = TypeVar("T")

_COLUMNS = (
    "decision_id",
    "request_id",
    "decision_point",
    "entity_key",
    "received_at_us",
    "decided_at_us",
    "model_name",
    "model_version",
    "model_sha256",
    "arm",
    "config_version",
    "fallback_reason",
    "score",
    "decision",
    "policy_version",
    "trace_id",
    "features_sha256",
    "stored_at_us",
    "record_sha256",
    "record_json",
)
_INSERT = (
    f"INSERT INTO decisions ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))}) "
    "ON CONFLICT (decision_id) DO NOTHING"
)
_SHA256 = _COLUMNS.index("record_sha256")
# Well under SQLite's bound-parameter limit.
_LOOKUP_CHUNK = 500


def now_us() -> int:
    return time.time_ns() // 1000


def _row(record: DecisionRecord, stored_at_us: int) -> tuple[object, ...]:
    body = canonical_record_json(record)
    r = record
    return (
        r.decision_id,
        r.request_id,
        r.decision_point,
        r.entity_key,
        r.received_at_us,
        r.decided_at_us,
        r.model_name,
        r.model_version,
        r.model_sha256,
        r.arm,
        r.config_version,
        r.fallback_reason,
        r.score,
        r.decision,
        r.policy_version,
        r.trace_id,
        r.features_sha256,
        stored_at_us,
        hashlib.sha256(body).hexdigest(),
        body.decode(),
    )


def _connect(path: Path, *, read_only: bool) -> sqlite3.Connection:
    if read_only:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
        conn.execute("PRAGMA query_only = ON")
    else:
        # isolation_level=None: transactions are begun and committed explicitly below.
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA busy_timeout = 5000")
    return conn


def apply_migrations(conn: sqlite3.Connection, migrations: Sequence[Migration]) -> int:
    """Applies pending migrations in order, each in its own transaction; returns the version."""
    conn.execute(SCHEMA_MIGRATIONS_TABLE)
    applied = {
        version: (name, checksum)
        for version, name, checksum in conn.execute(
            "SELECT version, name, checksum FROM schema_migrations"
        )
    }
    known = {m.version: m for m in migrations}
    unknown = sorted(set(applied) - set(known))
    if unknown:
        raise MigrationError(
            f"database has schema versions {unknown} that this build does not know; "
            "it was written by a newer scoregate"
        )
    for migration in sorted(migrations, key=lambda m: m.version):
        if migration.version in applied:
            if applied[migration.version][1] != migration.checksum:
                raise MigrationError(
                    f"schema migration {migration.version} ({migration.name}) differs from the "
                    "one applied to this database"
                )
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in migration.statements:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum, applied_at_us) "
                "VALUES (?, ?, ?, ?)",
                (migration.version, migration.name, migration.checksum, now_us()),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        log.info("applied schema migration %d (%s)", migration.version, migration.name)
    return max((m.version for m in migrations), default=0)


class SqliteLineageStore(LineageStore):
    """The default backend: a single SQLite file in WAL mode."""

    def __init__(self, path: Path, migrations: Sequence[Migration] = SQLITE_MIGRATIONS) -> None:
        self.path = path
        self._migrations = migrations
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="lineage-writer")
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="lineage-reader")
        self._write_conn: sqlite3.Connection | None = None
        self._read_conn: sqlite3.Connection | None = None
        self._closed = False

    async def _run(self, executor: ThreadPoolExecutor, fn: Callable[[], T]) -> T:
        if self._closed:
            raise StoreUnavailable("lineage store is closed")
        try:
            return await asyncio.get_running_loop().run_in_executor(executor, fn)
        except sqlite3.Error as e:
            log.error("lineage database error: %s", e)
            raise StoreUnavailable(f"lineage database error: {e}") from e

    async def open(self) -> None:
        try:
            await self._run(self._writer, self._open_writer)
            await self._run(self._reader, self._open_reader)
        except BaseException:
            await self.close()
            raise

    def _open_writer(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._write_conn = _connect(self.path, read_only=False)
        version = apply_migrations(self._write_conn, self._migrations)
        log.info("lineage database %s at schema version %d", self.path, version)

    def _open_reader(self) -> None:
        self._read_conn = _connect(self.path, read_only=True)

    async def close(self) -> None:
        if self._closed:
            return
        await self._run(self._reader, functools.partial(self._close_conn, "_read_conn"))
        await self._run(self._writer, functools.partial(self._close_conn, "_write_conn"))
        self._closed = True
        self._reader.shutdown()
        self._writer.shutdown()

    def _close_conn(self, attr: str) -> None:
        conn: sqlite3.Connection | None = getattr(self, attr)
        if conn is not None:
            conn.close()
            setattr(self, attr, None)

    async def insert_many(self, records: Sequence[DecisionRecord]) -> InsertResult:
        if not records:
            return InsertResult()
        return await self._run(self._writer, functools.partial(self._insert, list(records)))

    def _insert(self, records: list[DecisionRecord]) -> InsertResult:
        conn = self._require(self._write_conn)
        result = InsertResult()
        stored_at = now_us()
        batch: dict[str, tuple[object, ...]] = {}
        for record in records:
            row = _row(record, stored_at)
            earlier = batch.get(record.decision_id)
            if earlier is None:
                batch[record.decision_id] = row
            else:
                self._count_repeat(
                    result, record.decision_id, str(earlier[_SHA256]), str(row[_SHA256])
                )
        conn.execute("BEGIN IMMEDIATE")
        try:
            stored = self._stored_hashes(conn, list(batch))
            new = []
            for decision_id, row in batch.items():
                if decision_id in stored:
                    self._count_repeat(result, decision_id, stored[decision_id], str(row[_SHA256]))
                else:
                    new.append(row)
            conn.executemany(_INSERT, new)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        result.inserted = len(new)
        return result

    @staticmethod
    def _count_repeat(result: InsertResult, decision_id: str, stored: str, offered: str) -> None:
        if stored == offered:
            result.duplicates += 1
        else:
            result.conflicts.append(Conflict(decision_id, stored, offered))

    @staticmethod
    def _stored_hashes(conn: sqlite3.Connection, ids: list[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for start in range(0, len(ids), _LOOKUP_CHUNK):
            chunk = ids[start : start + _LOOKUP_CHUNK]
            marks = ", ".join("?" * len(chunk))
            found.update(
                conn.execute(
                    "SELECT decision_id, record_sha256 FROM decisions "
                    f"WHERE decision_id IN ({marks})",
                    chunk,
                )
            )
        return found

    async def get(self, decision_id: str) -> StoredDecision | None:
        return await self._run(self._reader, functools.partial(self._get, decision_id))

    def _get(self, decision_id: str) -> StoredDecision | None:
        conn = self._require(self._read_conn)
        row = conn.execute(
            "SELECT record_json, stored_at_us FROM decisions WHERE decision_id = ?",
            (decision_id,),
        ).fetchone()
        if row is None:
            return None
        return StoredDecision(record_from_json(row[0]), int(row[1]))

    async def schema_version(self) -> int:
        return await self._run(self._reader, self._schema_version)

    def _schema_version(self) -> int:
        conn = self._require(self._read_conn)
        (version,) = conn.execute(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations"
        ).fetchone()
        return int(version)

    @staticmethod
    def _require(conn: sqlite3.Connection | None) -> sqlite3.Connection:
        if conn is None:
            raise StoreUnavailable("lineage store is not open")
        return conn
