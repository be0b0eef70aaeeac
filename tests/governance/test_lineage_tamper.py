"""The tamper suite: records edited, deleted, inserted, reordered and truncated directly in the
database, on both backends; ``verify`` must catch each one and name the first bad entry."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import pytest
from lineage_support import MakeRecord, RawDatabase, raw_database

from governance.chain import Checkpoint, link
from governance.store import LineageStore, create_store
from governance.store.entries import ArmTarget, Outcome, Override, RouteChange
from governance.store.tables import DECISION_COLUMNS, decision_row
from lineage.v1.record import canonical_record_json

N = 12


@dataclass
class Stored:
    store: LineageStore
    db: RawDatabase
    ids: list[str]  # decision ids by seq - 1 (decisions take seq 1..N)
    checkpoint: Checkpoint


@pytest.fixture
async def stored(db_url: str, make_record: MakeRecord) -> Iterator[Stored]:
    store = create_store(db_url)
    await store.open()
    records = [make_record() for _ in range(N)]
    await store.insert_many(records)
    await store.add_override(
        Override("ovr-1", records[3].decision_id, "j.smith", 1_000, "approve", "customer called")
    )
    await store.add_outcome(Outcome("out-1", records[3].decision_id, "not_fraud", 2_000, "cases"))
    await store.add_route_change(
        RouteChange(3_000, "cfg-1", {}, (ArmTarget("card-fraud", "primary", "card-fraud", "1", 1),))
    )
    checkpoint = await store.head()
    assert checkpoint.size == N + 3
    with raw_database(db_url) as db:
        try:
            yield Stored(store, db, [r.decision_id for r in records], checkpoint)
        finally:
            await store.close()


def decision_json(db: RawDatabase, decision_id: str) -> str:
    [(text,)] = db.execute(
        "SELECT record_json FROM decisions WHERE decision_id = ?", (decision_id,)
    )
    return str(text)


def edit_column(s: Stored) -> None:
    s.db.execute("UPDATE decisions SET decision = 'approve' WHERE decision_id = ?", (s.ids[4],))


def edit_record(s: Stored) -> None:
    text = decision_json(s.db, s.ids[4]).replace('"decision":"decline"', '"decision":"approve"')
    s.db.execute("UPDATE decisions SET record_json = ? WHERE decision_id = ?", (text, s.ids[4]))


def edit_record_and_its_hashes(s: Stored) -> None:
    """A careful forger: changes the record, every column and its sha256 consistently."""
    from lineage.v1.record import record_from_json

    [(stored_at,)] = s.db.execute(
        "SELECT stored_at_us FROM decisions WHERE decision_id = ?", (s.ids[4],)
    )
    forged = replace(record_from_json(decision_json(s.db, s.ids[4])), score=0.01)
    row = decision_row(forged, int(stored_at))
    sets = ", ".join(f"{c} = ?" for c in DECISION_COLUMNS)
    s.db.execute(f"UPDATE decisions SET {sets} WHERE decision_id = ?", (*row, s.ids[4]))


def rewrite_whole_chain(s: Stored) -> None:
    """The strongest forger: edits a record and recomputes every chain hash and the head."""
    edit_record_and_its_hashes(s)
    chain = "00" * 32
    rows = s.db.execute(
        "SELECT 'decisions', seq, record_sha256 FROM decisions UNION ALL "
        "SELECT 'overrides', seq, entry_sha256 FROM overrides UNION ALL "
        "SELECT 'outcomes', seq, entry_sha256 FROM outcomes UNION ALL "
        "SELECT 'route_changes', seq, entry_sha256 FROM route_changes ORDER BY 2"
    )
    for table, seq, sha in rows:
        chain = link(chain, sha, seq)
        s.db.execute(f"UPDATE {table} SET chain_sha256 = ? WHERE seq = ?", (chain, seq))
    s.db.execute("UPDATE chain_head SET chain_sha256 = ? WHERE id = 1", (chain,))


def delete_one(s: Stored) -> None:
    s.db.execute("DELETE FROM decisions WHERE decision_id = ?", (s.ids[6],))


def insert_unchained(s: Stored) -> None:
    forged = decision_json(s.db, s.ids[0]).replace(s.ids[0], "0190b3a2-c7d4-7f3e-8a1b-2c3d4e5f6a7b")
    copy_with(s, s.ids[0], "0190b3a2-c7d4-7f3e-8a1b-2c3d4e5f6a7b", forged, seq=None)


def insert_renumbered(s: Stored) -> None:
    """Makes room at seq 6 by shifting every later entry up, then puts a forged record there."""
    for table in ("decisions", "overrides", "outcomes", "route_changes"):
        s.db.execute(f"UPDATE {table} SET seq = -seq WHERE seq >= 6")
        s.db.execute(f"UPDATE {table} SET seq = 1 - seq WHERE seq < 0")
    forged_id = "0190b3a2-c7d4-7f3e-8a1b-2c3d4e5f6a7c"
    text = decision_json(s.db, s.ids[0]).replace(s.ids[0], forged_id)
    [(chain5,)] = s.db.execute("SELECT chain_sha256 FROM decisions WHERE seq = 5")
    from governance.chain import sha256_hex

    copy_with(s, s.ids[0], forged_id, text, seq=6, chain=link(chain5, sha256_hex(text.encode()), 6))
    s.db.execute("UPDATE chain_head SET seq = seq + 1 WHERE id = 1")


def copy_with(
    s: Stored, source: str, new_id: str, text: str, seq: int | None, chain: str | None = None
) -> None:
    from lineage.v1.record import record_from_json

    row = decision_row(record_from_json(text), 1)
    columns = (*DECISION_COLUMNS, "seq", "chain_sha256")
    marks = ", ".join("?" * len(columns))
    s.db.execute(
        f"INSERT INTO decisions ({', '.join(columns)}) VALUES ({marks})", (*row, seq, chain)
    )


def append_forged(s: Stored) -> None:
    forged_id = "0190b3a2-c7d4-7f3e-8a1b-2c3d4e5f6a7d"
    text = decision_json(s.db, s.ids[0]).replace(s.ids[0], forged_id)
    copy_with(s, s.ids[0], forged_id, text, seq=N + 4, chain="ab" * 32)


def reorder(s: Stored) -> None:
    s.db.execute("UPDATE decisions SET seq = -1 WHERE seq = 3")
    s.db.execute("UPDATE decisions SET seq = 3 WHERE seq = 4")
    s.db.execute("UPDATE decisions SET seq = 4 WHERE seq = -1")


def truncate_tail(s: Stored) -> None:
    s.db.execute("DELETE FROM route_changes")
    s.db.execute("DELETE FROM outcomes")
    s.db.execute("DELETE FROM overrides")
    s.db.execute("DELETE FROM decisions WHERE seq > 10")


def truncate_tail_and_head(s: Stored) -> None:
    """Truncates and moves the head back: consistent inside the database, so only the
    checkpoint exported outside it can tell."""
    truncate_tail(s)
    [(chain,)] = s.db.execute("SELECT chain_sha256 FROM decisions WHERE seq = 10")
    s.db.execute("UPDATE chain_head SET seq = 10, chain_sha256 = ? WHERE id = 1", (chain,))


def edit_override(s: Stored) -> None:
    s.db.execute("UPDATE overrides SET reviewer = 'someone.else'")


def delete_outcome(s: Stored) -> None:
    s.db.execute("DELETE FROM outcomes")


# tamper -> (the first bad seq verify must report, words of its message, which decision it names:
# an index into Stored.ids, or None when the first bad entry is not one stored decision)
TAMPERS: dict[str, tuple[Callable[[Stored], None], int, str, int | None]] = {
    "edit a column": (edit_column, 5, "column decision differs", 4),
    "edit the record": (edit_record, 5, "does not match its sha256", 4),
    "edit record and hashes": (edit_record_and_its_hashes, 5, "chain hash does not follow", 4),
    "rewrite the whole chain": (rewrite_whole_chain, N + 3, "differs from the checkpoint", None),
    "delete a record": (delete_one, 7, "entry missing", 7),  # names the next one present
    "insert without a seq": (insert_unchained, 0, "no place in the chain", None),
    "insert and renumber": (insert_renumbered, 7, "chain hash does not follow", 5),
    "append past the head": (append_forged, N + 4, "beyond the chain head", None),
    "reorder two records": (reorder, 3, "chain hash does not follow", 3),
    "truncate the tail": (truncate_tail, 11, "missing at the end", None),
    "truncate tail and head": (truncate_tail_and_head, 11, "truncated", None),
    "edit an override": (edit_override, N + 1, "column reviewer differs", None),
    "delete an outcome": (delete_outcome, N + 2, "entry missing", None),
}


async def test_untouched_store_verifies(stored: Stored) -> None:
    report = await stored.store.verify([stored.checkpoint])
    assert report.ok, report.problem
    assert (report.checked, report.checkpoints_checked) == (N + 3, 1)


@pytest.mark.parametrize("name", list(TAMPERS))
async def test_verify_catches_tampering(stored: Stored, name: str) -> None:
    tamper, bad_seq, message, named = TAMPERS[name]
    tamper(stored)
    report = await stored.store.verify([stored.checkpoint])
    assert not report.ok
    assert message in report.problem
    assert report.bad_seq == bad_seq, report.problem
    if named is not None:
        assert stored.ids[named] in report.problem


def test_canonical_json_is_what_is_hashed(make_record: MakeRecord) -> None:
    record = make_record()
    assert canonical_record_json(record).decode() in str(decision_row(record, 0))
