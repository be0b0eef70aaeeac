"""The SQLite store on its own: migrations, idempotence, conflicts, URLs, and the error table."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from lineage_support import MakeRecord

from governance import errors
from governance.errors import DatabaseUrlError, LineageError, MigrationError
from governance.status import INTERNAL_MESSAGE, to_status
from governance.store import SqliteLineageStore, create_store, parse_db_url
from governance.store.migrations import SQLITE_MIGRATIONS, Migration


async def open_store(
    path: Path, migrations: tuple[Migration, ...] = SQLITE_MIGRATIONS
) -> SqliteLineageStore:
    store = SqliteLineageStore(path, migrations)
    await store.open()
    return store


async def test_insert_is_idempotent_and_conflicts_keep_the_first(
    tmp_path: Path, make_record: MakeRecord
) -> None:
    store = await open_store(tmp_path / "l.db")
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
    tmp_path: Path, make_record: MakeRecord
) -> None:
    store = await open_store(tmp_path / "l.db")
    try:
        result = await store.insert_many([make_record() for _ in range(512)])
        assert result.inserted == 512
    finally:
        await store.close()
    with sqlite3.connect(tmp_path / "l.db") as conn:
        assert conn.execute("SELECT COUNT(DISTINCT stored_at_us) FROM decisions").fetchone() == (1,)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_migrations_apply_once_and_refuse_a_changed_history(tmp_path: Path) -> None:
    path = tmp_path / "l.db"
    for _ in range(2):
        store = await open_store(path)
        assert await store.schema_version() == 1
        await store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT version FROM schema_migrations").fetchall() == [(1,)]

    edited = (replace(SQLITE_MIGRATIONS[0], statements=("SELECT 1",)),)
    with pytest.raises(MigrationError, match="differs"):
        await open_store(path, edited)

    newer = (*SQLITE_MIGRATIONS, Migration(2, "later", ("CREATE TABLE later (x INTEGER)",)))
    store = await open_store(path, newer)
    assert await store.schema_version() == 2
    await store.close()
    with pytest.raises(MigrationError, match="newer"):
        await open_store(path)


async def test_closed_store_is_unavailable(tmp_path: Path, make_record: MakeRecord) -> None:
    store = await open_store(tmp_path / "l.db")
    await store.close()
    await store.close()  # idempotent
    with pytest.raises(errors.StoreUnavailable):
        await store.insert_many([make_record()])


async def test_store_calls_leave_the_event_loop_free(
    tmp_path: Path, make_record: MakeRecord
) -> None:
    store = await open_store(tmp_path / "l.db")
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


def test_postgresql_is_recognised_but_not_yet_available() -> None:
    assert parse_db_url("postgresql://lineage@db:5432/lineage").backend == "postgresql"
    with pytest.raises(DatabaseUrlError, match="PostgreSQL backend not yet available"):
        create_store("postgresql://lineage@db:5432/lineage")


def _all_errors(cls: type[LineageError]) -> list[type[LineageError]]:
    return [cls, *(sub for child in cls.__subclasses__() for sub in _all_errors(child))]


EXPECTED_CODES = {
    "LineageError": grpc.StatusCode.INTERNAL,
    "InvalidDecisionId": grpc.StatusCode.INVALID_ARGUMENT,
    "DecisionNotFound": grpc.StatusCode.NOT_FOUND,
    "StoreUnavailable": grpc.StatusCode.UNAVAILABLE,
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
