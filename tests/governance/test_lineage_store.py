"""The store on its own, on both backends: migrations, idempotence, conflicts, URLs, errors."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from lineage_support import MakeRecord, raw_database

from governance import errors
from governance.errors import DatabaseUrlError, LineageError, MigrationError
from governance.status import INTERNAL_MESSAGE, to_status
from governance.store import (
    LineageStore,
    PostgresLineageStore,
    SqliteLineageStore,
    create_store,
    parse_db_url,
)
from governance.store.migrations import POSTGRES_MIGRATIONS, SQLITE_MIGRATIONS, Migration
from governance.store.sqlite import PAGE_SIZE
from governance.store.tables import LEGACY_DECISION_COLUMNS, decision_row
from loadtests.local.topology import free_port


def backend_migrations(db_url: str) -> tuple[Migration, ...]:
    return POSTGRES_MIGRATIONS if db_url.startswith("postgres") else SQLITE_MIGRATIONS


async def open_store(db_url: str, migrations: tuple[Migration, ...] | None = None) -> LineageStore:
    store: LineageStore
    if migrations is None:
        store = create_store(db_url)
    elif db_url.startswith("postgres"):
        store = PostgresLineageStore(db_url, migrations)
    else:
        store = SqliteLineageStore(Path(db_url.removeprefix("sqlite:///")), migrations)
    await store.open()
    return store


def test_both_backends_have_the_same_migration_versions() -> None:
    assert [(m.version, m.name) for m in SQLITE_MIGRATIONS] == [
        (m.version, m.name) for m in POSTGRES_MIGRATIONS
    ]


async def test_insert_is_idempotent_and_conflicts_keep_the_first(
    db_url: str, make_record: MakeRecord
) -> None:
    store = await open_store(db_url)
    try:
        records = [make_record() for _ in range(3)]
        first = await store.insert_many(records)
        assert (first.inserted, first.duplicates, first.conflicts) == (3, 0, [])
        forged = replace(records[0], score=0.01)
        again = await store.insert_many([*records, forged, records[1]])
        assert (again.inserted, again.duplicates) == (0, 4)
        assert [c.decision_id for c in again.conflicts] == [records[0].decision_id]
        got = await store.get(records[0].decision_id)
        assert got is not None and got.record == records[0]
        assert await store.get("00000000-0000-7000-8000-000000000000") is None
    finally:
        await store.close()


async def test_batch_of_512_is_one_durable_transaction(
    db_url: str, make_record: MakeRecord
) -> None:
    store = await open_store(db_url)
    try:
        result = await store.insert_many([make_record() for _ in range(512)])
        assert result.inserted == 512
    finally:
        await store.close()
    with raw_database(db_url) as db:
        assert db.execute("SELECT COUNT(DISTINCT stored_at_us) FROM decisions") == [(1,)]
        # one chain, numbered without gaps in the order of the batch
        assert db.execute("SELECT MIN(seq), MAX(seq), COUNT(DISTINCT seq) FROM decisions") == [
            (1, 512, 512)
        ]
        if not db.postgres:
            assert db.execute("PRAGMA journal_mode") == [("wal",)]


async def test_migrations_apply_once_and_refuse_a_changed_history(db_url: str) -> None:
    migrations = backend_migrations(db_url)
    latest = migrations[-1].version
    for _ in range(2):
        store = await open_store(db_url)
        assert await store.schema_version() == latest
        await store.close()
    with raw_database(db_url) as db:
        applied = db.execute("SELECT version FROM schema_migrations ORDER BY version")
    assert applied == [(m.version,) for m in migrations]

    edited = (replace(migrations[0], statements=("SELECT 1",)), *migrations[1:])
    with pytest.raises(MigrationError, match="differs"):
        await open_store(db_url, edited)

    later = Migration(latest + 1, "later", ("CREATE TABLE later (x INTEGER)",))
    store = await open_store(db_url, (*migrations, later))
    assert await store.schema_version() == latest + 1
    await store.close()
    with pytest.raises(MigrationError, match="newer"):
        await open_store(db_url)


async def test_decisions_stored_before_the_chain_are_linked_on_upgrade(
    tmp_path: Path, make_record: MakeRecord
) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = await open_store(url, SQLITE_MIGRATIONS[:1])  # the vertical slice's schema
    await old.close()
    records = [make_record() for _ in range(3)]
    with raw_database(url) as db:
        for n, record in enumerate(records):
            # The columns of that schema: principal_reason came with version 6.
            row = tuple(decision_row(record, 1_000 + n))[: len(LEGACY_DECISION_COLUMNS)]
            marks = ", ".join("?" * len(row))
            db.execute(
                f"INSERT INTO decisions ({', '.join(LEGACY_DECISION_COLUMNS)}) VALUES ({marks})",
                row,
            )
    store = await open_store(url)
    try:
        assert [(await store.get(r.decision_id)).seq for r in records] == [1, 2, 3]  # type: ignore[union-attr]
        report = await store.verify([])
        assert report.ok and report.checked == 3, report.problem
    finally:
        await store.close()


async def test_closed_store_is_unavailable(db_url: str, make_record: MakeRecord) -> None:
    store = await open_store(db_url)
    await store.close()
    await store.close()  # idempotent
    with pytest.raises(errors.StoreUnavailable):
        await store.insert_many([make_record()])


async def test_store_calls_leave_the_event_loop_free(db_url: str, make_record: MakeRecord) -> None:
    store = await open_store(db_url)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    try:
        await store.insert_many([make_record() for _ in range(2000)])
    finally:
        task.cancel()
        await store.close()
    assert ticks > 10  # the loop kept running while the writer thread worked


async def test_new_sqlite_files_use_large_pages_and_old_files_keep_theirs(
    tmp_path: Path, make_record: MakeRecord
) -> None:
    fresh = tmp_path / "fresh.db"
    store = await open_store(f"sqlite:///{fresh}")
    await store.insert_many([make_record()])
    await store.close()
    with sqlite3.connect(fresh) as conn:
        assert conn.execute("PRAGMA page_size").fetchone()[0] == PAGE_SIZE == 16384

    # A file made before the change (SQLite's default 4 KiB pages, already in WAL mode).
    old = tmp_path / "old.db"
    with sqlite3.connect(old) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE unrelated (x INTEGER)")
    store = await open_store(f"sqlite:///{old}")
    try:
        record = make_record()
        assert (await store.insert_many([record])).inserted == 1
        stored = await store.get(record.decision_id)
        assert stored is not None and stored.record == record
    finally:
        await store.close()
    with sqlite3.connect(old) as conn:
        assert conn.execute("PRAGMA page_size").fetchone()[0] == 4096


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///lineage.db", Path("lineage.db")),
        ("sqlite:///data/lineage.db", Path("data/lineage.db")),
        ("sqlite:////var/lib/scoregate/lineage.db", Path("/var/lib/scoregate/lineage.db")),
    ],
)
def test_sqlite_urls(url: str, path: Path) -> None:
    parsed = parse_db_url(url)
    assert (parsed.backend, parsed.path) == ("sqlite", path)


@pytest.mark.parametrize("url", ["lineage.db", "sqlite://", "sqlite:///", "mysql://db/x"])
def test_bad_urls(url: str) -> None:
    with pytest.raises(DatabaseUrlError):
        parse_db_url(url)


def test_postgresql_urls_choose_the_postgresql_backend() -> None:
    assert parse_db_url("postgresql://lineage@db:5432/lineage").backend == "postgresql"
    store = create_store("postgresql://lineage:secret@db:5432/lineage")
    assert isinstance(store, PostgresLineageStore)
    assert "secret" not in store.describe()


async def test_unreachable_postgresql_fails_to_open() -> None:
    store = create_store(f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere")
    with pytest.raises(errors.StoreUnavailable):
        await store.open()


def _all_errors(cls: type[LineageError]) -> list[type[LineageError]]:
    return [cls, *(sub for child in cls.__subclasses__() for sub in _all_errors(child))]


EXPECTED_CODES = {
    "LineageError": grpc.StatusCode.INTERNAL,
    "InvalidRequest": grpc.StatusCode.INVALID_ARGUMENT,
    "InvalidDecisionId": grpc.StatusCode.INVALID_ARGUMENT,
    "UnstorableData": grpc.StatusCode.INVALID_ARGUMENT,
    "DecisionNotFound": grpc.StatusCode.NOT_FOUND,
    "ModelNotFound": grpc.StatusCode.NOT_FOUND,
    "EntryConflict": grpc.StatusCode.ALREADY_EXISTS,
    "StoreUnavailable": grpc.StatusCode.UNAVAILABLE,
    "AccessRuleMissing": grpc.StatusCode.PERMISSION_DENIED,
    "ConfigurationError": grpc.StatusCode.FAILED_PRECONDITION,
    "DatabaseUrlError": grpc.StatusCode.FAILED_PRECONDITION,
    "MigrationError": grpc.StatusCode.FAILED_PRECONDITION,
}


@pytest.mark.parametrize("cls", _all_errors(LineageError), ids=lambda c: c.__name__)
def test_every_error_maps_to_its_status(cls: type[LineageError]) -> None:
    assert to_status(cls("details for the caller")) == (
        EXPECTED_CODES[cls.__name__],
        "details for the caller",
    )


def test_unknown_errors_become_a_generic_internal() -> None:
    assert to_status(KeyError("secret internals")) == (grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)


async def test_two_writers_on_one_database_keep_one_gapless_chain(
    db_url: str, make_record: MakeRecord
) -> None:
    """Two lineage replicas (or a restart overlapping a drain) writing the same database."""
    first, second = await open_store(db_url), await open_store(db_url)
    try:
        shared = [make_record() for _ in range(50)]  # both receive these: at-least-once delivery
        batches = [[*shared[i::4], *(make_record() for _ in range(20))] for i in range(4)]
        results = await asyncio.gather(
            *(store.insert_many(b) for store in (first, second) for b in batches)
        )
        unique = 50 + 4 * 20  # every batch reaches both stores
        assert sum(r.inserted for r in results) == unique
        assert sum(r.duplicates for r in results) == unique
        report = await first.verify([await second.head()])
        assert report.ok, report.problem
        assert report.checked == unique
    finally:
        await first.close()
        await second.close()
