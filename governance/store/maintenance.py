"""Keeping the database in shape: applying schema migrations at start, and purging by retention.

The migrations themselves are in ``governance.store.migrations``; this is the runner.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from governance.chain import GENESIS, link, sha256_hex
from governance.errors import MigrationError
from governance.store.clock import now_us
from governance.store.engine import Connection
from governance.store.entity_index import EntityIndex
from governance.store.entries import PurgeReport, canonical
from governance.store.hash_chain import append_entry, chain_hash_at, lock_head, move_head
from governance.store.migrations import SCHEMA_MIGRATIONS_TABLE, Migration
from governance.store.reason_index import ReasonIndex
from governance.store.tables import SEQ_TABLES

log = logging.getLogger(__name__)

# The migration that adds the hash chain: decisions stored before it are linked once it applies.
_HASH_CHAIN_VERSION = 2


def prepare_schema(db: Connection, migrations: Sequence[Migration]) -> None:
    """Applies pending migrations and links decisions stored before the chain existed."""
    applied = apply_migrations(db, migrations)
    if _HASH_CHAIN_VERSION in applied:
        _chain_existing_decisions(db)


def apply_migrations(db: Connection, migrations: Sequence[Migration]) -> list[int]:
    """Applies pending migrations in order, each in its own transaction; returns those.

    Under the dialect's migration lock, if it has one, so that replicas starting together on one
    database apply each version once.
    """
    if db.dialect.migration_lock:
        db.run(db.dialect.migration_lock)
    try:
        return _apply_pending(db, migrations)
    finally:
        if db.dialect.migration_unlock:
            db.run(db.dialect.migration_unlock)


def _apply_pending(db: Connection, migrations: Sequence[Migration]) -> list[int]:
    db.run(SCHEMA_MIGRATIONS_TABLE)
    applied = {
        version: checksum
        for version, checksum in db.run("SELECT version, checksum FROM schema_migrations")
    }
    known = {m.version: m for m in migrations}
    unknown = sorted(set(applied) - set(known))
    if unknown:
        raise MigrationError(
            f"database has schema versions {unknown} that this build does not know; "
            "it was written by a newer scoregate"
        )
    done: list[int] = []
    for migration in sorted(migrations, key=lambda m: m.version):
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


def _chain_existing_decisions(db: Connection) -> None:
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


def schema_version(db: Connection) -> int:
    (version,) = db.run("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").fetchone()
    return int(version)


def purge(
    db: Connection, entities: EntityIndex, reasons: ReasonIndex, cutoff_us: int
) -> PurgeReport:
    """Deletes the longest prefix of the chain whose entries are all older than the cutoff.

    Route changes are kept (they say what served later, too) but leave the verified part of
    the chain; everything else in the prefix is deleted. The run is appended to the chain
    with the boundary's seq and chain hash, from which ``verify`` starts afterwards.
    """
    recent = entities.recent
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
            if entities.enabled:
                recent = entities.purge(db, cutoff_us)
            if reasons.enabled:
                reasons.purge(db, cutoff_us)
        run_at = now_us()
        report = PurgeReport("", run_at, cutoff_us, boundary, boundary_chain, deleted)
        body = report.body()
        seq = append_entry(db, SEQ_TABLES["purges"], body, run_at)
    entities.recent = recent
    purge_id = sha256_hex(canonical(body))
    return PurgeReport(purge_id, run_at, cutoff_us, boundary, boundary_chain, deleted, seq)
