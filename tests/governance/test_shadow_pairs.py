"""Shadow-pair disagreement in the store, on SQLite and PostgreSQL: each pair counted once,
whichever half arrives first (or both in one batch, or one offered again), in its parent's
hour, and the count query an index search rather than a scan."""

from __future__ import annotations

import dataclasses
import random

from lineage_support import raw_database, uuid7
from support.records import BASE_US, make_record

from governance.monitoring import windows
from governance.monitoring.queries import DriftQueries
from governance.store import create_store
from governance.store.shadow_pairs import shadows_sql
from lineage.v1.record import PARENT_DECISION_ID, DecisionRecord

HOUR = windows.HOUR_US
DECISIONS = ("approve", "review", "decline")


def _pairs(n: int, start_us: int, seed: int) -> list[tuple[DecisionRecord, DecisionRecord]]:
    """Parents by card-fraud v1 and their shadows by v2, decided the same about 3 times in 4."""
    chance = random.Random(seed)
    out = []
    for i in range(n):
        at = start_us + i * (HOUR // n)
        decision = chance.choice(DECISIONS)
        parent = make_record(
            model_version="1", decision=decision, decided_at_us=at, received_at_us=at - 900
        )
        other = decision if chance.random() < 0.75 else chance.choice(DECISIONS)
        # The shadow answers a little later; late in the hour, in the next one.
        shadow = make_record(
            model_version="2", arm="shadow", decision=other,
            decided_at_us=at + HOUR // 50, received_at_us=at - 900,
            extra={PARENT_DECISION_ID: parent.decision_id},
        )  # fmt: skip
        out.append((parent, shadow))
    return out


def _differ(pairs: list[tuple[DecisionRecord, DecisionRecord]]) -> int:
    return sum(p.decision != s.decision for p, s in pairs)


async def test_each_pair_is_counted_once_whatever_the_order(db_url: str) -> None:
    start = BASE_US - BASE_US % HOUR
    pairs = _pairs(400, start, seed=7)
    parents_first, shadows_first, together = pairs[:150], pairs[150:300], pairs[300:]
    store = create_store(db_url)
    await store.open()
    try:
        await store.insert_many([p for p, _ in parents_first])
        await store.insert_many([s for _, s in parents_first])
        await store.insert_many([s for _, s in shadows_first])
        await store.insert_many([p for p, _ in shadows_first])
        await store.insert_many([r for pair in together for r in pair])
        # A sender's retry of both halves, and a shadow whose parent never arrives.
        await store.insert_many([r for pair in pairs[:50] for r in pair])
        orphan = dataclasses.replace(
            pairs[0][1], decision_id=uuid7(), extra={PARENT_DECISION_ID: uuid7()}
        )
        await store.insert_many([orphan])

        (window,) = await DriftQueries(store).drift("card-fraud", start, start + 2 * HOUR)
        (shadow,) = [a for a in window.arms if a.arm == "shadow"]
        (paired,) = shadow.shadow_pairs
        assert (paired.parent_model, paired.parent_version) == ("card-fraud", "1")
        assert (paired.pairs, paired.disagreements) == (400, _differ(pairs))
        assert 0.1 < paired.disagreement_rate < 0.4
        assert all(a.shadow_pairs == () for a in window.arms if a.arm != "shadow")
        # Counted in the parent's hour, though the last shadows were decided in the next one.
        (first_hour,) = await DriftQueries(store).drift("card-fraud", start, start + HOUR)
        (shadow,) = [a for a in first_hour.arms if a.arm == "shadow"]
        assert shadow.shadow_pairs[0].pairs == 400
    finally:
        await store.close()


def test_the_pair_query_uses_the_parent_index(db_url: str) -> None:
    """The store's own SQL, explained on a store's own database: an index search, no scan."""
    import asyncio

    async def create() -> None:
        store = create_store(db_url)
        await store.open()
        await store.close()

    asyncio.run(create())
    with raw_database(db_url) as db:
        if db.postgres:
            db.execute("SET enable_seqscan = off")  # a tiny table is scanned whatever the indexes
            plan = "\n".join(
                r[0] for r in db.execute("EXPLAIN " + shadows_sql("postgresql", 3), ("a", "b", "c"))
            )
        else:
            rows = db.execute("EXPLAIN QUERY PLAN " + shadows_sql("sqlite", 3), ("a", "b", "c"))
            plan = "\n".join(str(r[-1]) for r in rows)
    assert "decisions_shadow_parent" in plan, plan
    assert "Seq Scan" not in plan and "SCAN decisions" not in plan, plan
