"""A poison record in the outbox (one no lineage store can keep: a NUL in its text, as records
appended before the gateway refused them can hold) is dead-lettered, and every record before and
after it is delivered, on both backends (issue 20, item 4). Before, on PostgreSQL the store
answered UNAVAILABLE for the batch, which the sender retries forever: nothing behind it arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from outbox_support import get_decisions, make_record
from support.postgres import postgres_database

from gateway.outbox import OutboxConfig, OutboxMetrics
from gateway.server import open_outbox
from loadtests.local.topology import ManagedProcess, start_lineage


@pytest.fixture(params=["postgresql", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ManagedProcess]:
    """A real lineage store process on a fresh PostgreSQL database, or a new SQLite file."""
    with contextlib.ExitStack() as stack:
        if request.param == "postgresql":
            db: Path | str = stack.enter_context(postgres_database())
        else:
            db = tmp_path / "lineage.db"
        proc = start_lineage(db, tmp_path / "lineage")
        try:
            yield proc
        finally:
            assert proc.stop() == 0, proc.log_tail()


async def test_a_poison_record_is_dead_lettered_and_everything_after_it_delivered(
    tmp_path: Path, store: ManagedProcess, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    metrics = OutboxMetrics()
    config = OutboxConfig(
        tmp_path / "outbox", endpoint=store.address, batch_records=16, backoff_max_s=0.5
    )
    good = [make_record() for _ in range(120)]
    poison = [make_record(entity_key="acct-\x0042"), make_record(request_id="req-\x00-7")]
    stream = [*good[:40], poison[0], *good[40:80], poison[1], *good[80:]]
    outbox = await open_outbox(config, metrics)
    try:
        await outbox.append_many(stream)
        assert await outbox.drained(30), f"{outbox.unacked_records} still unacknowledged"
        sample = metrics.registry.get_sample_value
        assert sample("scoregate_outbox_dead_lettered_total") == len(poison)
        assert sample("scoregate_outbox_acks_total") == len(stream)
        # The store refused the poison records as records, never as a store that is down.
        assert sample("scoregate_outbox_send_failures_total", {"code": "UNAVAILABLE"}) is None
    finally:
        await outbox.close()

    stored = await asyncio.to_thread(get_decisions, store.address, [r.decision_id for r in stream])
    assert set(stored) == {r.decision_id for r in good}
    for record in good:
        assert stored[record.decision_id].entity_key == record.entity_key

    # Kept for an operator: each poison record whole, with the store's reason.
    lines = (tmp_path / "outbox" / "dead-letter.jsonl").read_text().splitlines()
    letters = {letter["decision_id"]: letter for letter in map(json.loads, lines)}
    assert set(letters) == {r.decision_id for r in poison}
    for record, field in zip(poison, ("entity_key", "request_id"), strict=True):
        letter = letters[record.decision_id]
        assert letter["record"][field] == getattr(record, field)
        assert f"{field} contains a NUL character" in letter["reason"]
        logged = [
            r
            for r in caplog.records
            if r.name == "gateway.outbox.sender"
            and r.levelno == logging.ERROR
            and record.decision_id in r.getMessage()
        ]
        assert len(logged) == 1 and "dead-letter.jsonl" in logged[0].getMessage()
