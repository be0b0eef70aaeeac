"""The access log's batching writer on a real store: a batch is one append, a value the
database refuses leaves out only its own entry, and a database that is down keeps entries
waiting rather than losing them."""

from __future__ import annotations

import uuid

import pytest

from governance.audit import AccessLog
from governance.store import create_store
from governance.store.entries import AccessEntry, AccessFilter

EVERYTHING = AccessFilter(since_us=0, until_us=2**62)


def _entry(principal: str = "analyst") -> AccessEntry:
    return AccessEntry(
        access_id=str(uuid.uuid4()), at_us=1_000, principal=principal, verified_by="jwt",
        peer="ipv4:127.0.0.1:1", method="GetDecision", permission="read_decisions",
        policy_version="p1", decision_ids=(str(uuid.uuid4()),), query={}, outcome="OK",
    )  # fmt: skip


async def test_entries_go_in_as_one_batch_and_verify(db_url: str) -> None:
    store = create_store(db_url)
    await store.open()
    try:
        log = AccessLog(store)
        for _ in range(5):
            await log.record(_entry())
        await log.flush()
        assert (log.stats.entries, log.stats.batches) == (5, 1)
        page = await store.list_access(EVERYTHING, 10)
        assert [e.seq for e in page.entries] == [1, 2, 3, 4, 5]
        assert (await store.verify([])).ok
    finally:
        await store.close()


async def test_a_refused_entry_leaves_the_others_written(db_url: str) -> None:
    if db_url.startswith("sqlite"):
        pytest.skip("SQLite's text holds NUL: nothing here is refused")
    store = create_store(db_url)
    await store.open()
    try:
        log = AccessLog(store)
        for principal in ("a", "b\x00", "c"):
            await log.record(_entry(principal))
        await log.flush()
        assert (log.stats.entries, log.stats.refused) == (3, 1)
        page = await store.list_access(EVERYTHING, 10)
        assert [e.principal for e in page.entries] == ["a", "c"]
    finally:
        await store.close()


async def test_entries_wait_while_the_database_is_down(db_url: str) -> None:
    store = create_store(db_url)
    await store.open()
    log = AccessLog(store)
    await log.record(_entry())
    await store.close()
    await log.flush()  # the store is closed: nothing written, nothing dropped
    assert (log.stats.entries, log.stats.failures) == (0, 1)
    reopened = create_store(db_url)
    await reopened.open()
    try:
        log._store = reopened
        await log.flush()
        assert log.stats.entries == 1
        assert len((await reopened.list_access(EVERYTHING, 10)).entries) == 1
    finally:
        await reopened.close()
