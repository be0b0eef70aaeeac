"""Decisions by entity: found whether their entries are recent or merged, across a restart and
an upgrade from the indexed schema, and gone with a purge.

SQLite keeps the entity entries apart from the decisions and merges them in bulk (migration 4);
PostgreSQL indexes the decisions table. The queries must answer the same on both.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from lineage_support import MakeRecord, raw_database
from support.records import BASE_US

from governance.store import SqliteLineageStore, create_store
from governance.store.entries import DecisionFilter
from governance.store.migrations import SQLITE_MIGRATIONS
from governance.store.sql import SqlLineageStore
from lineage.v1.record import DecisionRecord

ENTITY = "acct-entity-1"
START = BASE_US + 1_000_000  # after every record's received_at_us


async def open_sql_store(db_url: str, merge_rows: int) -> SqlLineageStore:
    store = create_store(db_url)
    assert isinstance(store, SqlLineageStore)
    store.entity_merge_rows = merge_rows
    await store.open()
    return store


async def entity_ids(store: SqlLineageStore, since: int, until: int) -> list[str]:
    page = await store.list_decisions(DecisionFilter(since, until, entity_key=ENTITY), 100)
    assert sum(c.count for c in page.counts) == len(page.decisions)
    return [d.decision_id for d in page.decisions]


def entity_tables(db_url: str) -> tuple[int, int]:
    """(merged, recent) entity entries of a SQLite database."""
    with raw_database(db_url) as db:
        merged = db.execute("SELECT COUNT(*) FROM decision_entities")[0][0]
        recent = db.execute("SELECT COUNT(*) FROM decision_entities_recent")[0][0]
    return int(merged), int(recent)


def mine(make_record: MakeRecord, n: int) -> list[DecisionRecord]:
    return [make_record(entity_key=ENTITY, decided_at_us=START + i) for i in range(n)]


@contextlib.asynccontextmanager
async def merged_then_recent(
    db_url: str, ours: list[DecisionRecord], others: list[DecisionRecord]
) -> AsyncIterator[SqlLineageStore]:
    """A store merging every 4 entries, given three batches: 3 (recent), 2 more (all 5
    merged), the rest (recent again)."""
    store = await open_sql_store(db_url, merge_rows=4)
    try:
        await store.insert_many([ours[0], others[0], ours[1]])
        await store.insert_many([ours[2], others[1]])
        await store.insert_many([*ours[3:], *others[2:]])
        yield store
    finally:
        await store.close()


async def test_an_entitys_decisions_are_found_before_and_after_a_merge(
    db_url: str, make_record: MakeRecord
) -> None:
    ours = mine(make_record, 5)
    others = [make_record(entity_key=f"acct-other-{i}") for i in range(3)]
    async with merged_then_recent(db_url, ours, others) as store:
        ids = [r.decision_id for r in ours]
        assert await entity_ids(store, START, START + 100) == ids
        # A window across the merged and the recent entries.
        assert await entity_ids(store, START + 2, START + 4) == ids[2:4]
    if db_url.startswith("sqlite"):
        assert entity_tables(db_url) == (5, 3)


async def test_a_purge_takes_the_entity_entries_of_the_decisions_it_deletes(
    db_url: str, make_record: MakeRecord
) -> None:
    ours = mine(make_record, 5)
    older = [make_record(entity_key="acct-other") for _ in range(2)]
    async with merged_then_recent(db_url, ours, older) as store:
        report = await store.purge(START + 3)
        assert report.deleted["decisions"] == 5
        assert await entity_ids(store, 0, START + 100) == [r.decision_id for r in ours[3:]]
    if db_url.startswith("sqlite"):
        assert entity_tables(db_url) == (0, 2)


async def test_recent_entries_count_towards_a_merge_across_a_restart(
    tmp_path: Path, make_record: MakeRecord
) -> None:
    url = f"sqlite:///{tmp_path / 'lineage.db'}"
    ours = mine(make_record, 4)
    store = await open_sql_store(url, merge_rows=4)
    await store.insert_many(ours[:3])
    await store.close()
    assert entity_tables(url) == (0, 3)
    store = await open_sql_store(url, merge_rows=4)
    try:
        await store.insert_many(ours[3:])
        assert entity_tables(url) == (4, 0)
        assert await entity_ids(store, START, START + 100) == [r.decision_id for r in ours]
    finally:
        await store.close()


async def test_an_upgraded_database_keeps_answering_by_entity(
    tmp_path: Path, make_record: MakeRecord
) -> None:
    path = tmp_path / "lineage.db"
    ours = mine(make_record, 3)
    indexed = SqliteLineageStore(path, SQLITE_MIGRATIONS[:3])  # the schema before migration 4
    await indexed.open()
    await indexed.insert_many([*ours, make_record(entity_key="acct-other")])
    await indexed.close()

    url = f"sqlite:///{path}"
    store = await open_sql_store(url, merge_rows=100)
    try:
        assert await store.schema_version() == SQLITE_MIGRATIONS[-1].version
        assert await entity_ids(store, START, START + 100) == [r.decision_id for r in ours]
        assert entity_tables(url) == (4, 0)
        with raw_database(url) as db:
            indexes = {r[0] for r in db.execute("SELECT name FROM sqlite_master")}
        assert "decisions_entity_time" not in indexes
    finally:
        await store.close()
