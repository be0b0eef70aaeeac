"""Checkpoints exported by the real process, ``verify`` and ``purge`` as an auditor runs them."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from lineage_support import (
    MakeRecord,
    raw_database,
    send_with_otel_sdk,
    start_lineage,
    wait_for_decision,
)
from test_lineage_cli import lineage_cli

from governance.admin import months_before
from governance.chain import read_checkpoints
from governance.store import create_store
from governance.store.entries import ArmTarget, RouteChange

DAY = 86_400_000_000
NOW = time.time_ns() // 1000


def test_exported_checkpoints_let_verify_catch_a_deletion(
    db_url: str, tmp_path: Path, make_record: MakeRecord
) -> None:
    checkpoints = tmp_path / "checkpoints.jsonl"
    extra = ["--checkpoint-file", str(checkpoints), "--checkpoint-interval", "0.2"]
    lineage = start_lineage(db_url, tmp_path, extra_args=extra)
    records = [make_record() for _ in range(30)]
    try:
        send_with_otel_sdk(lineage.address, records)
        for r in records:
            wait_for_decision(lineage.address, r.decision_id)
    finally:
        assert lineage.stop() == 0, lineage.log_tail()
    # The chain holds the 30 decisions and the access log's entries of the reads above.
    with raw_database(db_url) as db:
        ((reads,),) = db.execute("SELECT COUNT(*) FROM access_log")
    size = 30 + int(reads)
    exported = read_checkpoints(checkpoints)
    assert exported and exported[-1].size == size  # the last one is written at shutdown

    ok = lineage_cli("verify", "--db-url", db_url, "--checkpoints", str(checkpoints))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "OK: the store matches" in ok.stdout
    assert f"entries checked    {size}" in ok.stdout

    with raw_database(db_url) as db:
        for table in ("decisions", "access_log"):
            db.execute(f"DELETE FROM {table} WHERE seq = ?", (size,))
        ((previous,),) = db.execute(
            "SELECT chain_sha256 FROM decisions WHERE seq = ? "
            "UNION ALL SELECT chain_sha256 FROM access_log WHERE seq = ?",
            (size - 1, size - 1),
        )
        db.execute("UPDATE chain_head SET seq = ?, chain_sha256 = ?", (size - 1, previous))
    bad = lineage_cli("verify", "--db-url", db_url, "--checkpoints", str(checkpoints))
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert f"TAMPERED: seq {size}" in bad.stdout and "truncated" in bad.stdout


async def test_purge_keeps_the_chain_verifiable_and_is_recorded(
    db_url: str, make_record: MakeRecord
) -> None:
    old = [make_record(received_at_us=NOW - 800 * DAY, decided_at_us=NOW - 800 * DAY + 5)
           for _ in range(5)]  # fmt: skip
    recent = [make_record(received_at_us=NOW - DAY, decided_at_us=NOW - DAY + 5) for _ in range(3)]
    store = create_store(db_url)
    await store.open()
    try:
        await store.insert_many(old)
        target = ArmTarget("card-fraud", "primary", "card-fraud", "1", 1.0)
        await store.add_route_change(RouteChange(NOW - 900 * DAY, "cfg-old", {}, (target,)))
        await store.insert_many(recent)
        before = await store.head()
    finally:
        await store.close()

    purged = lineage_cli("purge", "--db-url", db_url, "--retention-months", "25")
    assert purged.returncode == 0, purged.stderr
    assert "5 decisions" in purged.stdout and "boundary" in purged.stdout

    store = create_store(db_url)
    await store.open()
    try:
        assert all([await store.get(r.decision_id) is None for r in old])
        assert all([await store.get(r.decision_id) is not None for r in recent])
        kept = await store.route_change_at(NOW)
        assert kept is not None and kept.config_version == "cfg-old"  # route history is kept
        report = await store.verify([before])
        assert report.ok, report.problem
        assert report.boundary_seq == 6 and report.checked == 4  # 3 recent + the purge run
        again = await store.purge(NOW - 3000 * DAY)  # nothing to delete: still recorded
        assert again.deleted == {} and again.seq == before.size + 2
    finally:
        await store.close()

    with raw_database(db_url) as db:
        db.execute("UPDATE purges SET boundary_seq = 7 WHERE seq = ?", (before.size + 1,))
    store = create_store(db_url)
    await store.open()
    try:
        report = await store.verify([])
        assert not report.ok and "purge" in report.problem, report.problem
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("now", "months", "cutoff"),
    [
        (datetime(2027, 11, 23, 12, 0, tzinfo=UTC), 25, datetime(2025, 10, 23, 12, 0, tzinfo=UTC)),
        (datetime(2025, 3, 31, tzinfo=UTC), 1, datetime(2025, 2, 28, tzinfo=UTC)),
        (datetime(2024, 1, 15, tzinfo=UTC), 6, datetime(2023, 7, 15, tzinfo=UTC)),
    ],
)
def test_retention_counts_calendar_months(now: datetime, months: int, cutoff: datetime) -> None:
    assert months_before(now, months) == cutoff
