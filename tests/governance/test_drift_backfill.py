"""``scoregate lineage backfill-drift`` on a store created before the monitoring counters
(schema version 7), on SQLite and PostgreSQL: after the upgrade and the backfill, the counters
are those of a store that had counted every decision at ingest; a run stopped after one batch
resumes, and running it again changes nothing."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
from pathlib import Path

from support.records import BASE_US
from test_drift_store import _credit_risk, _records

from governance.monitoring import windows
from governance.store import PostgresLineageStore, SqliteLineageStore, create_store
from governance.store.base import LineageStore
from governance.store.entries import RegisteredManifest
from governance.store.migrations import (
    DRIFT_COUNTS_VERSION,
    POSTGRES_MIGRATIONS,
    SQLITE_MIGRATIONS,
)
from governance.store.sql import SqlLineageStore
from lineage.v1.record import PARENT_DECISION_ID, DecisionRecord

HOUR = windows.HOUR_US


async def _open(db_url: str, upto: int | None = None) -> LineageStore:
    store: LineageStore
    if db_url.startswith("postgres"):
        migrations = POSTGRES_MIGRATIONS if upto is None else POSTGRES_MIGRATIONS[:upto]
        store = PostgresLineageStore(db_url, migrations)
    else:
        migrations = SQLITE_MIGRATIONS if upto is None else SQLITE_MIGRATIONS[:upto]
        store = SqliteLineageStore(Path(db_url.removeprefix("sqlite:///")), migrations)
    await store.open()
    return store


def _shadows(parents: list[DecisionRecord]) -> list[DecisionRecord]:
    """A challenger's shadow of each parent, deciding otherwise for every third one."""
    return [
        dataclasses.replace(
            p,
            decision_id=p.decision_id[:-6] + "5ad0ee",
            arm="shadow",
            model_version="1",
            decision="approve" if i % 3 else "decline",
            extra={PARENT_DECISION_ID: p.decision_id},
        )
        for i, p in enumerate(parents)
    ]


def _backfill(db_url: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "governance.cli", "backfill-drift", "--db-url", db_url, *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


async def _counters(store: LineageStore, since: int) -> dict[tuple[str, str, str], dict]:  # type: ignore[type-arg]
    return {
        (c.model_name, c.model_version, c.arm): dict(c.counts)
        for c in await store.window_counts("credit-risk", since, since + 3 * HOUR)
    }


async def test_a_store_from_before_the_counters_is_backfilled_once(
    db_url: str, model_dir: Path, tmp_path: Path
) -> None:
    manifest, manifest_json = _credit_risk(model_dir)
    registered = RegisteredManifest(
        manifest.artifact_sha256, "credit-risk", "1", manifest_json, int(time.time() * 1e6)
    )
    start = BASE_US - BASE_US % HOUR
    old = _records(manifest, 900, start, "primary", seed=11)
    old_shadows = _shadows(old[:300])
    new = _records(manifest, 400, start + HOUR, "primary", seed=12)
    # A shadow stored before the upgrade whose parent arrives after it: counted at ingest.
    late_parent = new[0]
    early_shadow = _shadows([late_parent])[0]

    before = await _open(db_url, upto=DRIFT_COUNTS_VERSION - 1)
    try:
        await before.put_manifest(registered)
        await before.insert_many(old + old_shadows + [early_shadow])
    finally:
        await before.close()

    store = await _open(db_url)
    try:
        assert isinstance(store, SqlLineageStore)
        await store.insert_many(new)
        assert {k[2] for k in await _counters(store, start)} == {"primary", "shadow"}
        first = await store.backfill_drift(500)
        assert (first.counted, first.finished) == (500, False)
    finally:
        await store.close()
    printed = _backfill(db_url, "--batch", "250")
    assert "decisions counted" in printed and "OK" in printed

    # What a store counting from the start holds for the same decisions.
    reference = create_store(f"sqlite:///{tmp_path / 'reference.db'}")
    await reference.open()
    try:
        await reference.put_manifest(registered)
        await reference.insert_many(old + old_shadows + [early_shadow])
        await reference.insert_many(new)
        expected = await _counters(reference, start)
    finally:
        await reference.close()
    store = await _open(db_url)
    try:
        assert await _counters(store, start) == expected
        shadow_pairs = {
            slot: n
            for (measure, slot), n in expected[("credit-risk", "1", "shadow")].items()
            if measure == windows.SHADOW_PAIR
        }
        assert sum(shadow_pairs.values()) == 301
    finally:
        await store.close()
    # Again: nothing more is counted.
    _backfill(db_url)
    store = await _open(db_url)
    try:
        assert await _counters(store, start) == expected
    finally:
        await store.close()
