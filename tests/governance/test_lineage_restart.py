"""Records outlive the process: SIGTERM, start again on the same database, still there."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from lineage_support import MakeRecord, get_decision, send_with_otel_sdk, wait_for_decision

from governance.store.migrations import SQLITE_MIGRATIONS
from loadtests.local.topology import start_lineage


def test_records_survive_a_restart(tmp_path: Path, make_record: MakeRecord) -> None:
    db = tmp_path / "lineage.db"
    records = [make_record() for _ in range(20)]
    first = start_lineage(db, tmp_path / "first")
    try:
        send_with_otel_sdk(first.address, records)
        before = [wait_for_decision(first.address, r.decision_id) for r in records]
    finally:
        assert first.stop() == 0, first.log_tail()
    assert "lineage store stopped: " in first.log_tail()

    second = start_lineage(db, tmp_path / "second")
    try:
        after = [get_decision(second.address, r.decision_id) for r in records]
    finally:
        assert second.stop() == 0, second.log_tail()
    assert after == before
    with sqlite3.connect(db) as conn:
        versions = conn.execute("SELECT version, name FROM schema_migrations").fetchall()
    # migrations ran once, not again at the restart
    assert [v for v, _ in versions] == [m.version for m in SQLITE_MIGRATIONS]
