"""Decisions by reason code, on both backends: the principal reason's column and the any-rank
index, combined with the other filters; the upgrade of a store whose records predate them (and
the contributions fields), which still verify; and tampering with either index caught."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from lineage_support import MakeRecord, RawDatabase, raw_database
from support.records import BASE_US

from governance.chain import link
from governance.errors import InvalidRequest
from governance.queries import LineageQueries
from governance.store import PostgresLineageStore, SqliteLineageStore, create_store
from governance.store.base import LineageStore
from governance.store.entries import DecisionFilter
from governance.store.migrations import (
    POSTGRES_MIGRATIONS,
    REASON_INDEX_VERSION,
    SQLITE_MIGRATIONS,
)
from governance.store.reason_index import reason_condition
from governance.store.tables import LEGACY_DECISION_COLUMNS, decision_row, earlier_canonical_json
from lineage.v1.record import DecisionRecord, ReasonEntry, canonical_record_json

DAY = 86_400_000_000
SINCE, UNTIL = BASE_US - DAY, BASE_US + 40 * DAY


def reasons(*codes: str) -> tuple[ReasonEntry, ...]:
    return tuple(
        ReasonEntry(code=c, description=f"statement {c}", rank=n, feature=f"f{n}", contribution=0.5)
        for n, c in enumerate(codes, start=1)
    )


async def _open(db_url: str, upto: int | None = None) -> LineageStore:
    store: LineageStore
    if upto is None:
        store = create_store(db_url)
    elif db_url.startswith("postgres"):
        store = PostgresLineageStore(db_url, POSTGRES_MIGRATIONS[:upto])
    else:
        store = SqliteLineageStore(
            Path(db_url.removeprefix("sqlite:///")), SQLITE_MIGRATIONS[:upto]
        )
    await store.open()
    return store


def corpus(make_record: MakeRecord) -> dict[str, DecisionRecord]:
    """Named decisions a day apart: which reason where, on which point, with which decision."""
    specs: dict[str, dict[str, Any]] = {
        "r04-decline": {"reasons": reasons("R04", "R12")},
        "r04-review": {"reasons": reasons("R04"), "decision": "review"},
        "r04-second": {"reasons": reasons("R12", "R04")},
        "r04-credit": {"reasons": reasons("R04", "R07"), "decision_point": "credit-risk"},
        "approve": {"reasons": (), "decision": "approve"},
        "r04-late": {"reasons": reasons("R04")},
    }
    return {
        name: make_record(decided_at_us=BASE_US + n * DAY, **spec)
        for n, (name, spec) in enumerate(specs.items())
    }


async def ids(store: LineageStore, **selection: Any) -> list[str]:
    window = {"since_us": SINCE, "until_us": UNTIL, **selection}
    page = await LineageQueries(store).list_decisions(DecisionFilter(**window), limit=100)
    return [d.decision_id for d in page.decisions]


async def test_decisions_by_principal_reason_and_at_any_rank(
    db_url: str, make_record: MakeRecord
) -> None:
    named = corpus(make_record)
    by_id = {r.decision_id: name for name, r in named.items()}
    store = await _open(db_url)
    try:
        await store.insert_many(list(named.values()))

        async def names(**selection: Any) -> list[str]:
            return [by_id[i] for i in await ids(store, **selection)]

        assert await names(reason_code="R04") == [
            "r04-decline",
            "r04-review",
            "r04-credit",
            "r04-late",
        ]
        assert await names(reason_code="R04", reason_any_rank=True) == [
            "r04-decline",
            "r04-review",
            "r04-second",
            "r04-credit",
            "r04-late",
        ]
        # "all card-fraud declines whose principal reason was R04, in these four days"
        assert await names(
            reason_code="R04",
            decision="decline",
            decision_point="card-fraud",
            since_us=BASE_US,
            until_us=BASE_US + 4 * DAY,
        ) == ["r04-decline"]
        assert await names(reason_code="R12") == ["r04-second"]
        assert await names(reason_code="R12", reason_any_rank=True) == [
            "r04-decline",
            "r04-second",
        ]
        assert await names(reason_code="R07", model_name="card-fraud", reason_any_rank=True) == [
            "r04-credit"
        ]
        assert await names(reason_code="R99", reason_any_rank=True) == []
        assert await names(model_name="card-fraud", decision="approve") == ["approve"]

        # Counts cover the selection, and pages continue in order.
        selection = DecisionFilter(SINCE, UNTIL, reason_code="R04", reason_any_rank=True)
        queries = LineageQueries(store)
        first = await queries.list_decisions(selection, limit=2)
        assert sum(c.count for c in first.counts) == 5
        rest = await queries.list_decisions(selection, limit=10, page_token=first.next_page_token)
        assert [by_id[d.decision_id] for d in (*first.decisions, *rest.decisions)] == [
            "r04-decline",
            "r04-review",
            "r04-second",
            "r04-credit",
            "r04-late",
        ]
        with pytest.raises(InvalidRequest, match="reason_any_rank needs reason_code"):
            await ids(store, model_name="card-fraud", reason_any_rank=True)
        with pytest.raises(InvalidRequest, match="set entity_key, model_name or reason_code"):
            await ids(store)
        assert (await store.verify([])).ok
    finally:
        await store.close()


def _plan(db: RawDatabase, sql: str, params: list[object]) -> str:
    if db.postgres:
        db.execute("SET enable_seqscan = off")  # a tiny table is scanned whatever the indexes
        return "\n".join(str(r[0]) for r in db.execute("EXPLAIN " + sql, tuple(params)))
    return "\n".join(str(r[-1]) for r in db.execute("EXPLAIN QUERY PLAN " + sql, tuple(params)))


@pytest.mark.parametrize("any_rank", [False, True])
async def test_the_reason_queries_use_their_indexes(
    db_url: str, make_record: MakeRecord, any_rank: bool
) -> None:
    """The store's own condition, with the point, decision and time filters beside it."""
    store = await _open(db_url)
    try:
        await store.insert_many([make_record(decided_at_us=BASE_US + n) for n in range(50)])
    finally:
        await store.close()
    condition, params = reason_condition("R04", any_rank, SINCE, UNTIL)
    sql = (
        "SELECT decision_id FROM decisions WHERE decided_at_us >= ? AND decided_at_us < ? "
        f"AND {condition} AND decision_point = ? AND decision = ? "
        "ORDER BY decided_at_us, decision_id LIMIT 100"
    )
    with raw_database(db_url) as db:
        plan = _plan(db, sql, [SINCE, UNTIL, *params, "card-fraud", "decline"])
    index = "decision_reasons" if any_rank else "decisions_principal_reason"
    assert index in plan, plan
    assert "Seq Scan" not in plan and "SCAN decisions" not in plan, plan


def _insert_as_an_earlier_store_did(db: RawDatabase, record: DecisionRecord, at: int) -> None:
    """Appends a record in the JSON of its time, before the contributions fields and schema
    version 6, chained, as the store of that time wrote it."""
    body = earlier_canonical_json(record)
    assert body is not None
    row = decision_row(record, at, body)[: len(LEGACY_DECISION_COLUMNS)]
    [(head_seq, head_chain)] = db.execute("SELECT seq, chain_sha256 FROM chain_head WHERE id = 1")
    seq = int(head_seq) + 1
    chain = link(str(head_chain), str(row[LEGACY_DECISION_COLUMNS.index("record_sha256")]), seq)
    columns = (*LEGACY_DECISION_COLUMNS, "seq", "chain_sha256")
    marks = ", ".join("?" * len(columns))
    db.execute(f"INSERT INTO decisions ({', '.join(columns)}) VALUES ({marks})", (*row, seq, chain))
    db.execute("UPDATE chain_head SET seq = ?, chain_sha256 = ? WHERE id = 1", (seq, chain))


def _earlier(record: DecisionRecord) -> DecisionRecord:
    """The record as a gateway of that time made it: reasons without feature or contribution."""
    plain = tuple(
        ReasonEntry(code=r.code, description=r.description, rank=r.rank) for r in record.reasons
    )
    return replace(record, reasons=plain)


async def test_an_upgraded_store_finds_and_verifies_its_earlier_records(
    db_url: str, make_record: MakeRecord
) -> None:
    named = {name: _earlier(r) for name, r in corpus(make_record).items()}
    # A rules fallback's reasons listed out of rank order: the principal one is rank 1's.
    named["r04-second"] = replace(
        named["r04-second"],
        reasons=(
            ReasonEntry(code="R12", description="s", rank=2),
            ReasonEntry(code="R04", description="s", rank=1),
        ),
    )
    old = await _open(db_url, upto=REASON_INDEX_VERSION - 1)
    await old.close()
    with raw_database(db_url) as db:
        for n, record in enumerate(named.values()):
            _insert_as_an_earlier_store_did(db, record, 1_000 + n)

    store = await _open(db_url)
    try:
        assert await store.schema_version() >= REASON_INDEX_VERSION  # upgraded past it
        by_id = {r.decision_id: name for name, r in named.items()}
        principal = [by_id[i] for i in await ids(store, reason_code="R04")]
        assert principal == ["r04-decline", "r04-review", "r04-second", "r04-credit", "r04-late"]
        anywhere = [by_id[i] for i in await ids(store, reason_code="R12", reason_any_rank=True)]
        assert anywhere == ["r04-decline", "r04-second"]
        report = await store.verify([])
        assert report.ok and report.checked == len(named), report.problem

        # The record reads its new fields as defaults and keeps its stored hash; resent after
        # the upgrade (an outbox's retry), it is the same record, not a conflict.
        record = named["r04-decline"]
        got = await store.get(record.decision_id)
        assert got is not None and got.record == record
        earlier = earlier_canonical_json(record)
        assert earlier is not None and earlier != canonical_record_json(record)
        assert got.record_sha256 == hashlib.sha256(earlier).hexdigest()
        again = await store.insert_many([record, replace(record, score=0.5)])
        assert (again.inserted, again.duplicates, len(again.conflicts)) == (0, 1, 1)

        # New records beside them, then a purge of the old ones: the index follows.
        fresh = make_record(decided_at_us=BASE_US + 30 * DAY, reasons=reasons("R04"))
        await store.insert_many([fresh])
        await store.purge(BASE_US + 10 * DAY)
        assert await ids(store, reason_code="R04", reason_any_rank=True) == [fresh.decision_id]
        report = await store.verify([])
        assert report.ok, report.problem
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (
            "UPDATE decisions SET principal_reason = 'R99' WHERE principal_reason = 'R04'",
            "column principal_reason differs from the stored record (edited)",
        ),
        ("DELETE FROM decision_reasons WHERE code = 'R12'", "(the reason index edited"),
        ("UPDATE decision_reasons SET code = 'R99' WHERE code = 'R12'", "(the reason index edited"),
    ],
)
async def test_tampering_with_the_reason_index_is_caught(
    db_url: str, make_record: MakeRecord, tamper: str, message: str
) -> None:
    store = await _open(db_url)
    try:
        await store.insert_many(list(corpus(make_record).values()))
        assert (await store.verify([])).ok
        with raw_database(db_url) as db:
            db.execute(tamper)
        report = await store.verify([])
        assert not report.ok and message in report.problem, report.problem
    finally:
        await store.close()


def test_a_record_with_contributions_has_no_earlier_form(make_record: MakeRecord) -> None:
    """Only a record that could have been stored before the fields existed has one."""
    assert earlier_canonical_json(make_record(contributions={"amount": 0.25})) is None
    assert earlier_canonical_json(make_record(contributions_base=-2.0)) is None
    assert earlier_canonical_json(make_record(reasons=reasons("R04"))) is None
    assert earlier_canonical_json(make_record()) is not None
