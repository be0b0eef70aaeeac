"""The store's fast insert path: rows byte-for-byte as ``verify`` re-derives them, and a batch
mixing stored, new and conflicting ids still links only the new ones, without gaps."""

from __future__ import annotations

from dataclasses import replace

import pytest
from lineage_support import MakeRecord
from support.records import make_record

from governance.store import create_store
from governance.store.sql import fast_decision_row
from governance.store.tables import decision_row
from lineage.v1.record import ReasonEntry


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {
            "reasons": (
                ReasonEntry(code="R2", description="second", rank=2),
                ReasonEntry(code="R1", description="first", rank=1),
            )
        },
        {"extra": {"z": "1", "a": "2"}, "fallback_reason": "runtime_unavailable"},
        {"features": {"b": 1.5, "a": "x", "é": True}, "score": 0.0, "attempts": 3},
    ],
)
def test_fast_decision_row_is_decision_row(overrides: dict[str, object]) -> None:
    record = make_record(**overrides)
    assert fast_decision_row(record, 1_234) == decision_row(record, 1_234)


async def test_mixed_batch_links_only_new_records(db_url: str, make_record: MakeRecord) -> None:
    store = create_store(db_url)
    await store.open()
    try:
        stored = [make_record() for _ in range(4)]
        assert (await store.insert_many(stored)).inserted == 4
        fresh = [make_record() for _ in range(3)]
        forged = replace(stored[2], score=0.01)
        result = await store.insert_many([fresh[0], stored[1], forged, fresh[1], fresh[2]])
        assert (result.inserted, result.duplicates) == (3, 1)
        assert [c.decision_id for c in result.conflicts] == [stored[2].decision_id]
        got = [await store.get(r.decision_id) for r in (*stored, *fresh)]
        assert [g.seq if g else None for g in got] == [1, 2, 3, 4, 5, 6, 7]
        assert got[2] is not None and got[2].record == stored[2]
        head = await store.head()
        assert (head.size, head.head_sha256) == (7, got[-1].chain_sha256 if got[-1] else "")
        after = await store.insert_many([make_record()])
        assert after.inserted == 1 and (await store.head()).size == 8
        report = await store.verify([])
        assert report.problem == "" and report.checked == 8
    finally:
        await store.close()
