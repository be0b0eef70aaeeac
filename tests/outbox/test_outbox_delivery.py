"""Delivery to a real lineage store: everything appended is stored, through store and sender
crashes, exactly once; rejected records go to the dead-letter file instead of blocking."""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal
import sys
import time
from pathlib import Path

from outbox_support import get_decisions, make_record, restart_lineage, stored_ids
from support.waiting import wait_until_async

from gateway.outbox import OutboxConfig, OutboxMetrics, canonical_json
from gateway.server import open_outbox
from loadtests.local.topology import ManagedProcess

SCRIPT = Path(__file__).with_name("outbox_append_script.py")


def _config(tmp_path: Path, lineage: ManagedProcess, **overrides: object) -> OutboxConfig:
    fields: dict[str, object] = {"backoff_max_s": 0.5, **overrides}
    return OutboxConfig(tmp_path / "outbox", endpoint=lineage.address, **fields)  # type: ignore[arg-type]


async def test_appended_records_are_stored_as_recorded(
    tmp_path: Path, lineage: ManagedProcess
) -> None:
    metrics = OutboxMetrics()
    outbox = await open_outbox(_config(tmp_path, lineage, batch_records=64), metrics)
    try:
        records = [make_record() for _ in range(300)]
        await asyncio.gather(*(outbox.append(r) for r in records))
        assert await outbox.drained(20)
        assert outbox.unacked_records == 0
        assert metrics.registry.get_sample_value("scoregate_outbox_acks_total") == 300
    finally:
        await outbox.close()
    stored = await asyncio.to_thread(
        get_decisions, lineage.address, [r.decision_id for r in records]
    )
    assert set(stored) == {r.decision_id for r in records}
    for record in records:
        got = stored[record.decision_id]
        # The store's hash of the record it kept is the hash of the bytes the outbox appended.
        assert got.record_sha256 == hashlib.sha256(canonical_json(record)).hexdigest()
        assert got.entity_key == record.entity_key
        assert got.outputs.score == record.score
        assert (got.trace_id, got.span_id) == (record.trace_id, record.span_id)


async def test_a_store_down_for_seconds_loses_nothing(
    tmp_path: Path, lineage: ManagedProcess
) -> None:
    metrics = OutboxMetrics()
    outbox = await open_outbox(_config(tmp_path, lineage), metrics)
    restarted: ManagedProcess | None = None
    try:
        before = [make_record() for _ in range(100)]
        await asyncio.gather(*(outbox.append(r) for r in before))
        assert await outbox.drained(20)

        lineage.popen.send_signal(signal.SIGKILL)
        lineage.popen.wait()
        during = [make_record() for _ in range(300)]
        await asyncio.gather(*(outbox.append(r) for r in during))  # still durable: answered

        # "Down for seconds" as the outbox sees it: the sender has been refused at least twice
        # and the oldest record has waited two seconds. Then the store comes back.
        def unavailable_sends() -> float:
            return (
                metrics.registry.get_sample_value(
                    "scoregate_outbox_send_failures_total", {"code": "UNAVAILABLE"}
                )
                or 0.0
            )

        failures = await wait_until_async(
            unavailable_sends, 20, "two sends refused UNAVAILABLE", until=lambda n: n >= 2
        )
        await wait_until_async(
            outbox.oldest_unacked_age, 20, "the oldest record 2 s unacknowledged",
            until=lambda age: age >= 2,
        )  # fmt: skip
        assert outbox.unacked_records == 300
        assert outbox.oldest_unacked_age() >= 2
        assert failures and failures >= 2

        restarted = await asyncio.to_thread(
            restart_lineage, tmp_path / "lineage.db", tmp_path / "lineage", lineage.address
        )
        assert await outbox.drained(20), f"{outbox.unacked_records} still unacknowledged"
    finally:
        await outbox.close()
        if restarted is not None:
            restarted.kill()
    ids = [r.decision_id for r in before + during]
    stored = stored_ids(tmp_path / "lineage.db")
    assert sorted(stored) == sorted(ids)


async def test_a_rejected_record_is_dead_lettered_not_retried(
    tmp_path: Path, lineage: ManagedProcess
) -> None:
    metrics = OutboxMetrics()
    outbox = await open_outbox(_config(tmp_path, lineage), metrics)
    good = [make_record() for _ in range(40)]
    bad = make_record()
    bad = make_record(decision_id=bad.decision_id.upper())  # the store wants canonical ids
    try:
        for record in good[:20]:
            await outbox.append(record)
        await outbox.append(bad)
        for record in good[20:]:
            await outbox.append(record)
        assert await outbox.drained(20)
        assert metrics.registry.get_sample_value("scoregate_outbox_dead_lettered_total") == 1
    finally:
        await outbox.close()
    lines = (tmp_path / "outbox" / "dead-letter.jsonl").read_text().splitlines()
    (letter,) = [json.loads(line) for line in lines]
    assert letter["decision_id"] == bad.decision_id
    assert letter["record"]["entity_key"] == bad.entity_key
    assert "canonical" in letter["reason"]
    stored = stored_ids(tmp_path / "lineage.db")
    assert sorted(stored) == sorted(r.decision_id for r in good)


async def test_a_killed_sender_resends_every_durable_record_exactly_once(
    tmp_path: Path, lineage: ManagedProcess
) -> None:
    directory = tmp_path / "outbox"
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(SCRIPT),
        "--dir", str(directory), "--endpoint", lineage.address,
        "--count", "20000", "--concurrency", "64",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None
    printed: list[str] = []
    deadline = time.monotonic() + 20
    while len(printed) < 1500 and time.monotonic() < deadline:
        line = await asyncio.wait_for(process.stdout.readline(), 10)
        printed.append(line.decode().strip())
    process.kill()  # SIGKILL, mid-run
    rest, _ = await process.communicate()
    printed += rest.decode().splitlines()
    acknowledged = [i for i in printed if len(i) == 36]  # a line cut by the kill is not an answer
    assert len(acknowledged) >= 1500
    assert len(acknowledged) < 20000, "the sender finished before it was killed"

    outbox = await open_outbox(OutboxConfig(directory, endpoint=lineage.address))
    try:
        assert outbox.recovery is not None
        assert outbox.recovery.records > 0, "nothing was left to resend: the test proves nothing"
        assert await outbox.drained(20), f"{outbox.unacked_records} still unacknowledged"
    finally:
        await outbox.close()
    stored = stored_ids(tmp_path / "lineage.db")
    assert len(stored) == len(set(stored))
    missing = set(acknowledged) - set(stored)
    assert not missing, f"{len(missing)} acknowledged decisions lost"
