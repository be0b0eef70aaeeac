"""docs/lineage.md's tamper-evidence claims that test_lineage_tamper.py does not already cover,
one test per claim, each on a real store of both backends tampered with directly in SQL.

Two kinds: what ``verify`` catches (it must report the first bad entry), and what the doc says it
cannot catch (``verify`` passes). The second kind pins the doc's list of gaps: if ``verify`` learns
to catch one, its test fails, and the doc should move that claim to the caught list."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from lineage_support import MakeRecord, RawDatabase, raw_database
from test_lineage_cli import lineage_cli

from governance.chain import GENESIS, Checkpoint, append_checkpoint, link, sha256_hex
from governance.store import LineageStore, create_store
from governance.store.entries import ArmTarget, Outcome, Override, RouteChange
from governance.store.reason_index import reason_entries
from governance.store.tables import DECISION_COLUMNS, decision_row
from lineage.v1.record import record_from_json

N = 12  # decisions at seq 1..N, then an override, an outcome and a route change
DAY = 86_400_000_000
NOW = time.time_ns() // 1000

# Every chained table with its entry hash column, for a forger who re-links the chain.
HASHES = {
    "decisions": "record_sha256",
    "overrides": "entry_sha256",
    "outcomes": "entry_sha256",
    "route_changes": "entry_sha256",
    "purges": "entry_sha256",
}


@dataclass
class Stored:
    store: LineageStore
    db: RawDatabase
    ids: list[str]
    early: Checkpoint
    """Taken after the first 6 decisions."""
    checkpoint: Checkpoint
    """Taken after everything: size N + 3."""


@pytest.fixture
async def stored(db_url: str, make_record: MakeRecord) -> AsyncIterator[Stored]:
    store = create_store(db_url)
    await store.open()
    records = [make_record() for _ in range(N)]
    await store.insert_many(records[:6])
    early = await store.head()
    await store.insert_many(records[6:])
    await store.add_override(
        Override("ovr-1", records[3].decision_id, "j.smith", 1_000, "approve", "customer called")
    )
    await store.add_outcome(Outcome("out-1", records[3].decision_id, "not_fraud", 2_000, "cases"))
    target = ArmTarget("card-fraud", "primary", "card-fraud", "1", 1.0)
    await store.add_route_change(RouteChange(NOW - 900 * DAY, "cfg-1", {}, (target,)))
    checkpoint = await store.head()
    assert (early.size, checkpoint.size) == (6, N + 3)
    with raw_database(db_url) as db:
        try:
            yield Stored(store, db, [r.decision_id for r in records], early, checkpoint)
        finally:
            await store.close()


def _decision(db: RawDatabase, seq: int) -> tuple[str, str, int]:
    [(decision_id, text, stored_at)] = db.execute(
        "SELECT decision_id, record_json, stored_at_us FROM decisions WHERE seq = ?", (seq,)
    )
    return str(decision_id), str(text), int(stored_at)


def _relink(db: RawDatabase, after: int = 0, chain: str = GENESIS) -> None:
    """What a forger with write access does: recomputes every chain hash after ``after``
    and moves the head to the last entry."""
    union = " UNION ALL ".join(
        f"SELECT '{t}', seq, {h} FROM {t} WHERE seq > {after}" for t, h in HASHES.items()
    )
    seq = after
    for table, seq, sha in db.execute(union + " ORDER BY 2"):
        chain = link(chain, str(sha), int(seq))
        db.execute(f"UPDATE {table} SET chain_sha256 = ? WHERE seq = ?", (chain, seq))
    db.execute("UPDATE chain_head SET seq = ?, chain_sha256 = ? WHERE id = 1", (seq, chain))


def _forge_score(db: RawDatabase, seq: int, score: float) -> None:
    """Rewrites decision ``seq`` with another score, its columns and sha256 consistent."""
    decision_id, text, stored_at = _decision(db, seq)
    forged = replace(record_from_json(text), score=score)
    row = decision_row(forged, stored_at)
    sets = ", ".join(f"{c} = ?" for c in DECISION_COLUMNS)
    db.execute(f"UPDATE decisions SET {sets} WHERE decision_id = ?", (*row, decision_id))


def _append_chained(db: RawDatabase, new_id: str) -> None:
    """Appends a forged decision after the head as the store would: chained, head moved."""
    [(head_seq, head_chain)] = db.execute("SELECT seq, chain_sha256 FROM chain_head WHERE id = 1")
    _, text, _ = _decision(db, 1)
    forged = replace(record_from_json(text), decision_id=new_id, score=0.01)
    row: list[Any] = decision_row(forged, 1)
    seq = int(head_seq) + 1
    chain = link(str(head_chain), str(row[DECISION_COLUMNS.index("record_sha256")]), seq)
    columns = (*DECISION_COLUMNS, "seq", "chain_sha256")
    marks = ", ".join("?" * len(columns))
    db.execute(f"INSERT INTO decisions ({', '.join(columns)}) VALUES ({marks})", (*row, seq, chain))
    # ... and its reason index entries, as the store writes them with it.
    for entry in reason_entries(forged):
        db.execute(
            "INSERT INTO decision_reasons (code, decided_at_us, decision_id) VALUES (?, ?, ?)",
            entry,
        )
    db.execute("UPDATE chain_head SET seq = ?, chain_sha256 = ? WHERE id = 1", (seq, chain))


# What verify catches.


async def test_caught_an_entry_that_reuses_another_tables_seq(stored: Stored) -> None:
    """Each table's seq is unique by its own index; across tables only verify can tell."""
    [(body,)] = stored.db.execute("SELECT body FROM overrides")
    forged = body.replace("ovr-1", "ovr-2")
    stored.db.execute(
        "INSERT INTO overrides (override_id, decision_id, reviewer, at_us, new_decision, reason, "
        "recorded_at_us, seq, entry_sha256, chain_sha256, body) "
        "SELECT 'ovr-2', decision_id, reviewer, at_us, new_decision, reason, recorded_at_us, 5, "
        "?, ?, ? FROM overrides WHERE override_id = 'ovr-1'",
        (sha256_hex(forged.encode()), "ab" * 32, forged),
    )
    report = await stored.store.verify([stored.checkpoint])
    assert not report.ok and report.bad_seq == 5
    assert "seq 5 is used twice (inserted)" in report.problem, report.problem


async def test_caught_the_head_row_edited_alone(stored: Stored) -> None:
    stored.db.execute("UPDATE chain_head SET chain_sha256 = ? WHERE id = 1", ("cd" * 32,))
    report = await stored.store.verify([])
    assert not report.ok and "the chain head record does not match the entries" in report.problem


async def test_caught_the_head_moved_past_the_last_entry(stored: Stored) -> None:
    stored.db.execute("UPDATE chain_head SET seq = seq + 2 WHERE id = 1")
    report = await stored.store.verify([])
    assert not report.ok and report.bad_seq == N + 4
    assert "entries missing at the end (truncated)" in report.problem, report.problem


async def test_caught_a_content_addressed_entry_whose_id_was_changed(stored: Stored) -> None:
    stored.db.execute("UPDATE route_changes SET change_id = ?", ("ef" * 32,))
    report = await stored.store.verify([stored.checkpoint])
    assert not report.ok and report.bad_seq == N + 3
    assert "its id is not its content's sha256" in report.problem, report.problem


async def test_caught_a_purged_decision_put_back_below_the_purge_boundary(stored: Stored) -> None:
    columns = ", ".join((*DECISION_COLUMNS, "seq", "chain_sha256"))
    [row] = stored.db.execute(f"SELECT {columns} FROM decisions WHERE seq = 2")
    purge = await stored.store.purge(NOW + DAY)  # everything purgeable is older than this
    assert purge.boundary_seq == N + 3
    marks = ", ".join("?" * len(row))
    stored.db.execute(f"INSERT INTO decisions ({columns}) VALUES ({marks})", tuple(row))
    report = await stored.store.verify([])
    assert not report.ok and report.bad_seq == 2
    assert f"present below the purge boundary {N + 3} (inserted)" in report.problem


async def test_caught_by_an_older_checkpoint_when_the_latest_line_is_forged(
    stored: Stored, db_url: str, tmp_path: Path
) -> None:
    """``--all-checkpoints``: an attacker who rewrites the chain and appends a matching line to
    the checkpoint file passes the default check of the latest line, not the check of all."""
    file = tmp_path / "checkpoints.jsonl"
    append_checkpoint(file, stored.early)
    append_checkpoint(file, stored.checkpoint)
    _forge_score(stored.db, 3, 0.01)
    _relink(stored.db)
    [(size, head)] = stored.db.execute("SELECT seq, chain_sha256 FROM chain_head WHERE id = 1")
    append_checkpoint(file, Checkpoint(int(size), str(head), NOW))
    latest = lineage_cli("verify", "--db-url", db_url, "--checkpoints", str(file))
    assert latest.returncode == 0, latest.stdout + latest.stderr
    every = lineage_cli(
        "verify", "--db-url", db_url, "--checkpoints", str(file), "--all-checkpoints"
    )
    assert every.returncode == 1, every.stdout + every.stderr
    assert "TAMPERED: seq 6: chain hash differs from the checkpoint" in every.stdout


# What verify cannot catch: the doc's list of gaps.


async def test_not_caught_a_rewrite_of_the_whole_chain_without_a_checkpoint(
    stored: Stored,
) -> None:
    _forge_score(stored.db, 5, 0.01)
    _relink(stored.db)
    assert (await stored.store.verify([])).ok
    caught = await stored.store.verify([stored.checkpoint])  # the export is what catches it
    assert not caught.ok and "differs from the checkpoint" in caught.problem


async def test_not_caught_entries_appended_after_the_head_with_the_head_moved(
    stored: Stored,
) -> None:
    """A checkpoint vouches for the entries up to its size, not for what comes after; and the
    running store's next checkpoint then vouches for the forged entry too."""
    _append_chained(stored.db, "0190b3a2-c7d4-7f3e-8a1b-2c3d4e5f6a7e")
    report = await stored.store.verify([stored.checkpoint])
    assert report.ok, report.problem
    assert report.checked == N + 4
    later = await stored.store.head()
    assert later.size == N + 4 and (await stored.store.verify([later])).ok


async def test_not_caught_a_truncation_after_the_latest_checkpoint_with_the_head_moved_back(
    stored: Stored,
) -> None:
    stored.db.execute("DELETE FROM route_changes")
    stored.db.execute("DELETE FROM outcomes")
    stored.db.execute("DELETE FROM overrides")
    stored.db.execute(
        "DELETE FROM decision_reasons WHERE decision_id IN "
        "(SELECT decision_id FROM decisions WHERE seq > 8)"
    )
    stored.db.execute("DELETE FROM decisions WHERE seq > 8")
    [(chain,)] = stored.db.execute("SELECT chain_sha256 FROM decisions WHERE seq = 8")
    stored.db.execute("UPDATE chain_head SET seq = 8, chain_sha256 = ? WHERE id = 1", (chain,))
    assert (await stored.store.verify([stored.early])).ok  # the latest export covers only 6
    caught = await stored.store.verify([stored.checkpoint])
    assert not caught.ok and "truncated" in caught.problem


async def test_not_caught_an_edit_after_the_latest_checkpoint_relinked_from_there(
    stored: Stored,
) -> None:
    _forge_score(stored.db, 9, 0.01)
    [(chain6,)] = stored.db.execute("SELECT chain_sha256 FROM decisions WHERE seq = 6")
    _relink(stored.db, after=6, chain=str(chain6))
    report = await stored.store.verify([stored.early])
    assert report.ok, report.problem
    assert (report.checkpoints_checked, report.checked) == (1, N + 3)


async def test_not_caught_entries_deleted_by_a_purge_run_by_anyone_who_can_write(
    stored: Stored,
) -> None:
    """A purge deletes the chain's prefix by design, recent entries too with a late cutoff (as
    ``purge --before`` allows); the purge entry is the only trace, and checkpoints before its
    boundary are skipped."""
    purge = await stored.store.purge(NOW + DAY)
    assert purge.deleted["decisions"] == N
    report = await stored.store.verify([stored.early])
    assert report.ok, report.problem
    assert (report.boundary_seq, report.checkpoints_skipped) == (N + 3, 1)


async def test_not_caught_an_edit_of_a_route_change_below_the_purge_boundary(
    stored: Stored,
) -> None:
    """Route changes outlive a purge but leave the verified part of the chain."""
    await stored.store.purge(NOW + DAY)
    # Neither the entry's sha256 nor its content-addressed id is brought in line.
    stored.db.execute(
        "UPDATE route_changes SET config_version = 'cfg-forged', body = REPLACE(body, ?, ?)",
        ('"config_version":"cfg-1"', '"config_version":"cfg-forged"'),
    )
    served = await stored.store.route_change_at(NOW)
    assert served is not None and served.config_version == "cfg-forged"
    report = await stored.store.verify([])
    assert report.ok, report.problem
