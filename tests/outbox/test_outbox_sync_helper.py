"""The sync helper process (``sync="process"``, the default): rolls, losing it, its lifetime."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from outbox_support import make_record

from gateway.outbox import Outbox, OutboxClosed, OutboxConfig, canonical_json, syncer
from gateway.outbox.otlp import span_record
from gateway.outbox.process_writer import CLOSE_WAIT_S
from gateway.outbox.segments import list_segments
from gateway.outbox.syncer import CLOSE, OPEN, REPLY, REQUEST, SYNC
from lineage.v1.record import DecisionRecord

SCRIPT = Path(__file__).with_name("outbox_append_script.py")


def gone(pid: int) -> bool:
    """The process has exited (a zombie waiting for a reaper counts as exited)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in {"Z", "X"}


async def read_back(directory: Path) -> list[bytes]:
    """Every record a reopened outbox holds, in log order, across segments."""
    reopened = await Outbox.open(OutboxConfig(directory))
    records: list[bytes] = []
    try:
        while entries := await reopened.next_batch(1000, 1 << 20, wait=False):
            records += [span_record(e.payload)[1] for e in entries]
            await reopened.acknowledge(entries[-1].end, len(entries), sum(e.size for e in entries))
    finally:
        await reopened.close()
    return records


async def test_the_helper_keeps_syncing_across_segment_rolls(tmp_path: Path) -> None:
    outbox = await Outbox.open(OutboxConfig(tmp_path, segment_bytes=16384))
    records = [make_record() for _ in range(400)]
    try:
        assert outbox.config.sync == "process" and outbox.sync_helper_pid is not None
        for start in range(0, len(records), 40):  # waves, so that groups land in many segments
            await asyncio.gather(*(outbox.append(r) for r in records[start : start + 40]))
        assert len(list_segments(tmp_path)) >= 10
        assert outbox.sync_helper_pid is not None, "the helper was lost on a roll"
        assert outbox.unacked_records == 400
    finally:
        await outbox.close(0)
    assert await read_back(tmp_path) == [canonical_json(r) for r in records]


def test_a_sync_request_for_a_segment_sealed_meanwhile_is_answered(tmp_path: Path) -> None:
    """Under load the helper is often in an fdatasync while the gateway rolls: the SYNC for the
    old segment, its CLOSE and the new segment's OPEN and SYNC then reach it in one round. The
    sealed segment was synced by the gateway; the round must succeed, not fail on its closed
    descriptor (which broke the outbox)."""
    old = os.open(tmp_path / "old", os.O_RDWR | os.O_CREAT)
    new = os.open(tmp_path / "new", os.O_RDWR | os.O_CREAT)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    # All queued before the helper reads anything: one round.
    socket.send_fds(ours, [REQUEST.pack(OPEN, 1, 0)], [old])
    ours.send(REQUEST.pack(SYNC, 1, 1))
    ours.send(REQUEST.pack(CLOSE, 1, 0))
    socket.send_fds(ours, [REQUEST.pack(OPEN, 2, 0)], [new])
    ours.send(REQUEST.pack(SYNC, 2, 2))
    helper = subprocess.Popen(
        [sys.executable, "-I", syncer.__file__, str(theirs.fileno())], pass_fds=(theirs.fileno(),)
    )
    theirs.close()
    try:
        ours.settimeout(10)
        assert REPLY.unpack(ours.recv(REPLY.size)) == (0, 2)
    finally:
        ours.close()
        assert helper.wait(10) == 0
        os.close(old)
        os.close(new)


async def test_a_killed_helper_loses_no_acknowledged_append(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    outbox = await Outbox.open(OutboxConfig(tmp_path))
    records = [make_record() for _ in range(3000)]
    acknowledged: list[bytes] = []

    async def append(record: DecisionRecord) -> None:
        await outbox.append(record)
        acknowledged.append(canonical_json(record))

    helper = outbox.sync_helper_pid
    assert helper is not None
    try:
        with caplog.at_level(logging.ERROR, logger="gateway.outbox.process_writer"):
            first = asyncio.gather(*(append(r) for r in records[:1500]))
            await asyncio.sleep(0)  # every append of the first half is waiting for its sync
            os.kill(helper, signal.SIGKILL)
            await first
            await asyncio.gather(*(append(r) for r in records[1500:]))
        assert "sync helper lost" in caplog.text
        assert outbox.sync_helper_pid is None
        assert outbox.failure is None
    finally:
        await outbox.close(0)
    assert len(acknowledged) == 3000
    assert sorted(await read_back(tmp_path)) == sorted(acknowledged)


async def test_the_helper_exits_when_the_outbox_closes(tmp_path: Path) -> None:
    """By itself, at the end of its stream: close would kill it only after CLOSE_WAIT_S."""
    outbox = await Outbox.open(OutboxConfig(tmp_path))
    helper = outbox.sync_helper_pid
    assert helper is not None
    await outbox.append(make_record())
    started = time.monotonic()
    await outbox.close(0)
    assert time.monotonic() - started < CLOSE_WAIT_S / 2
    assert gone(helper)


def test_the_helper_does_not_outlive_a_killed_gateway(tmp_path: Path) -> None:
    """SIGKILL gives the gateway no chance to stop its helper: the helper sees its socket close
    and exits by itself."""
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--dir", str(tmp_path), "--endpoint", "", "--count",
         "100000", "--concurrency", "8"],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        proc.stdout.readline()  # an append has been acknowledged: the helper is running
        helpers = [
            int(pid)
            for pid in os.listdir("/proc")
            if pid.isdigit()
            and b"gateway/outbox/syncer.py" in _cmdline(int(pid))
            and _parent(int(pid)) == proc.pid
        ]
        assert len(helpers) == 1
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 10
        while not gone(helpers[0]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert gone(helpers[0])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


async def test_a_sync_failure_in_the_helper_refuses_decisions(tmp_path: Path) -> None:
    """A failing disk cannot be had here: the helper is handed a pipe in place of the open
    segment, whose fdatasync fails (EINVAL) as a disk's would fail with EIO."""
    outbox = await Outbox.open(OutboxConfig(tmp_path))
    read_end, write_end = os.pipe()
    try:
        first = make_record()
        await outbox.append(first)  # a healthy disk: durable
        writer = outbox._writer
        writer._send(OPEN, writer._index, 0, write_end)  # type: ignore[attr-defined]
        with pytest.raises(OutboxClosed, match="not made durable"):
            await outbox.append(make_record())
        assert isinstance(outbox.failure, OSError)
        with pytest.raises(OutboxClosed, match="failed"):
            await outbox.append(make_record())  # refused up front from now on
        assert outbox.sync_helper_pid is None
    finally:
        await outbox.close(0)
        os.close(read_end)
        os.close(write_end)
    # The acknowledged record is on disk; what else reached it after the failed sync is
    # unknown, as with a failed sync on the loop.
    assert canonical_json(first) in await read_back(tmp_path)


async def test_an_idle_loop_syncs_itself_and_a_busy_one_waits_for_the_helper(
    tmp_path: Path,
) -> None:
    """One call in flight syncs on the loop (no hand-off to the helper on its answer's path);
    under load the helper syncs, and a group never overtakes one the helper still holds."""
    busy = 0.0
    outbox = await Outbox.open(OutboxConfig(tmp_path), loop_busy=lambda: busy)
    helper = outbox.sync_helper_pid
    assert helper is not None
    os.kill(helper, signal.SIGSTOP)  # the helper answers nothing until it is continued
    try:
        idle = make_record()
        await asyncio.wait_for(outbox.append(idle), 5)  # durable without the helper
        busy = 1.0
        loaded = asyncio.ensure_future(outbox.append(make_record()))
        await asyncio.sleep(0.2)
        assert not loaded.done(), "under load the group waits for the helper's sync"
        busy = 0.0
        behind = asyncio.ensure_future(outbox.append(make_record()))
        await asyncio.sleep(0.2)
        assert not behind.done(), "a group synced on the loop would overtake the helper's"
        os.kill(helper, signal.SIGCONT)
        await asyncio.wait_for(asyncio.gather(loaded, behind), 5)
        assert outbox.sync_helper_pid == helper and outbox.failure is None
    finally:
        os.kill(helper, signal.SIGCONT)
        await outbox.close(0)
    assert len(await read_back(tmp_path)) == 3
