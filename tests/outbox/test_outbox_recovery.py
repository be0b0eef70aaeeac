"""Framing and recovery: what a crash leaves on disk is found, cut and kept; nothing else moves."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Literal

import pytest
from outbox_support import make_record

from gateway.outbox import Outbox, OutboxConfig, canonical_json
from gateway.outbox.framing import ZERO_FILLED, Frame, ScanEnd, frame, iter_frames
from gateway.outbox.segments import list_segments, segment_path
from lineage.v1.record import canonical_record_json


async def _fill(directory: Path, count: int) -> list[bytes]:
    outbox = await Outbox.open(OutboxConfig(directory))
    payloads = [canonical_json(make_record()) for _ in range(count)]
    for payload in payloads:
        await outbox.append_payload(payload)
    await outbox.close()
    return payloads


@contextlib.asynccontextmanager
async def _reopened(directory: Path) -> AsyncIterator[Outbox]:
    """The outbox as a restarted gateway opens it (recovery included), closed afterwards."""
    outbox = await Outbox.open(OutboxConfig(directory))
    try:
        assert outbox.recovery is not None
        yield outbox
    finally:
        await outbox.close()


async def _read_all(outbox: Outbox) -> list[bytes]:
    payloads: list[bytes] = []
    while entries := await outbox.next_batch(1000, 1 << 20, wait=False):
        payloads += [e.payload for e in entries]
        await outbox.acknowledge(entries[-1].end, len(entries), sum(e.size for e in entries))
    return payloads


async def _filled(directory: Path, count: int) -> tuple[list[bytes], Path, int]:
    """``count`` records appended by a gateway that closed; their segment and its size."""
    payloads = await _fill(directory, count)
    segment = _largest_segment(directory)
    return payloads, segment, segment.stat().st_size


def _largest_segment(directory: Path) -> Path:
    return max((segment_path(directory, i) for i in list_segments(directory)), key=_size)


def _size(path: Path) -> int:
    return path.stat().st_size


def test_payload_is_the_canonical_record_json() -> None:
    record = make_record(extra={"z": "1", "a": "2"})
    assert canonical_json(record) == canonical_record_json(record)


def test_frames_round_trip_and_a_flipped_bit_is_caught() -> None:
    data = frame(b'{"a":1}') + frame(b'{"b":2}')
    items = list(iter_frames(data))
    assert [i.payload for i in items if isinstance(i, Frame)] == [b'{"a":1}', b'{"b":2}']
    assert items[-1] == ScanEnd(len(data))

    corrupt = bytearray(data)
    corrupt[-2] ^= 0x01
    items = list(iter_frames(bytes(corrupt)))
    assert [i.payload for i in items if isinstance(i, Frame)] == [b'{"a":1}']
    assert items[-1] == ScanEnd(len(frame(b'{"a":1}')), "crc mismatch")
    assert list(iter_frames(data[:-3]))[-1] == ScanEnd(len(frame(b'{"a":1}')), "incomplete")


async def test_torn_tail_is_truncated_and_kept_in_quarantine(tmp_path: Path) -> None:
    payloads, segment, full = await _filled(tmp_path, 10)
    with segment.open("r+b") as f:  # a crash in the middle of writing the last frame
        f.truncate(full - 5)

    outbox = await Outbox.open(OutboxConfig(tmp_path))
    try:
        assert outbox.recovery is not None
        assert outbox.unacked_records == 9
        assert len(outbox.recovery.quarantined) == 1
        assert "torn tail" in outbox.recovery.problems[0]
        assert segment.stat().st_size == full - len(frame(payloads[-1]))
        assert outbox.recovery.quarantined[0].read_bytes() == frame(payloads[-1])[:-5]
        late = canonical_json(make_record())
        await outbox.append_payload(late)
        assert await _read_all(outbox) == [*payloads[:9], late]
    finally:
        await outbox.close()


async def test_crc_corruption_in_an_older_segment_is_detected(tmp_path: Path) -> None:
    first = await _fill(tmp_path, 6)
    second = await _fill(tmp_path, 3)  # the first run's segment is no longer the last
    segment = segment_path(tmp_path, list_segments(tmp_path)[0])
    offset = 8 + sum(len(frame(p)) for p in first[:3])  # the first segment's fourth record
    with segment.open("r+b") as f:
        f.seek(offset + 20)
        byte = f.read(1)
        f.seek(offset + 20)
        f.write(bytes([byte[0] ^ 0xFF]))

    outbox = await Outbox.open(OutboxConfig(tmp_path))
    try:
        assert outbox.recovery is not None
        problem = outbox.recovery.problems[0]
        assert "corruption" in problem and "crc mismatch" in problem and str(offset) in problem
        kept = outbox.recovery.quarantined[0].read_bytes()
        assert len(kept) == sum(len(frame(p)) for p in first[3:])  # the bad frame and what follows
        assert await _read_all(outbox) == [*first[:3], *second]
    finally:
        await outbox.close()


async def test_acknowledged_records_are_not_read_again_after_reopening(tmp_path: Path) -> None:
    payloads = await _fill(tmp_path, 20)
    outbox = await Outbox.open(OutboxConfig(tmp_path))
    entries = await outbox.next_batch(8, 1 << 20)
    await outbox.acknowledge(entries[-1].end, len(entries), sum(e.size for e in entries))
    await outbox.close()

    outbox = await Outbox.open(OutboxConfig(tmp_path))
    try:
        assert outbox.unacked_records == 12
        assert await _read_all(outbox) == payloads[8:]
        assert outbox.unacked_records == 0
    finally:
        await outbox.close()
    # Passed segments are deleted; only the newest (empty) ones remain.
    assert all(segment_path(tmp_path, i).stat().st_size == 8 for i in list_segments(tmp_path))


def test_an_empty_record_is_refused_and_a_zero_length_ends_the_frames() -> None:
    with pytest.raises(ValueError, match="empty record"):
        frame(b"")
    data = frame(b'{"a":1}') + bytes(64)
    items = list(iter_frames(data))
    assert [i.payload for i in items if isinstance(i, Frame)] == [b'{"a":1}']
    assert items[-1] == ScanEnd(len(frame(b'{"a":1}')), ZERO_FILLED)


@pytest.mark.parametrize("sync", ["process", "loop", "thread"])
async def test_an_open_segment_is_zero_filled_ahead_and_trimmed_when_closed(
    tmp_path: Path, sync: Literal["process", "loop", "thread"]
) -> None:
    outbox = await Outbox.open(OutboxConfig(tmp_path, sync=sync))
    payloads = [canonical_json(make_record()) for _ in range(5)]
    for payload in payloads:
        await outbox.append_payload(payload)
    written = 8 + sum(len(frame(p)) for p in payloads)
    segment = _largest_segment(tmp_path)
    for _ in range(200):  # the filler runs on a thread of its own
        if segment.stat().st_size > written:
            break
        await asyncio.sleep(0.01)
    assert segment.stat().st_size > written
    assert not segment.read_bytes()[written:].strip(b"\0")
    await outbox.close()
    assert segment.stat().st_size == written


async def test_zero_filled_space_a_crash_leaves_is_trimmed_and_nothing_is_cut(
    tmp_path: Path,
) -> None:
    payloads, segment, written = await _filled(tmp_path, 10)
    with segment.open("ab") as f:  # killed before sealing: the space filled ahead remains
        f.write(bytes(1 << 20))

    async with _reopened(tmp_path) as outbox:
        assert outbox.recovery is not None
        assert outbox.recovery.problems == [] and outbox.recovery.quarantined == []
        assert outbox.unacked_records == 10
        assert segment.stat().st_size == written
        assert await _read_all(outbox) == payloads


async def test_a_torn_frame_in_zero_filled_space_is_kept_without_the_zeros(
    tmp_path: Path,
) -> None:
    payloads = await _fill(tmp_path, 10)
    segment = _largest_segment(tmp_path)
    full = segment.stat().st_size
    with segment.open("r+b") as f:  # the last frame half written into zero-filled space
        f.truncate(full - 5)
        f.seek(0, 2)
        f.write(bytes(1 << 16))

    async with _reopened(tmp_path) as outbox:
        assert outbox.recovery is not None
        assert outbox.unacked_records == 9
        assert "torn tail" in outbox.recovery.problems[0]
        assert outbox.recovery.quarantined[0].read_bytes() == frame(payloads[-1])[:-5]
        assert segment.stat().st_size == full - len(frame(payloads[-1]))
        assert await _read_all(outbox) == payloads[:9]


async def test_frames_past_zero_filled_space_are_cut_and_kept(tmp_path: Path) -> None:
    payloads, segment, written = await _filled(tmp_path, 4)
    stray = frame(canonical_json(make_record()))
    with segment.open("ab") as f:  # a later group reached the disk, an earlier one did not
        f.write(bytes(100) + stray)

    async with _reopened(tmp_path) as outbox:
        assert outbox.recovery is not None
        assert "frames after zero-filled space" in outbox.recovery.problems[0]
        assert outbox.recovery.quarantined[0].read_bytes() == bytes(100) + stray
        assert segment.stat().st_size == written
        assert await _read_all(outbox) == payloads


async def test_a_version_1_segment_is_still_recovered_and_read(tmp_path: Path) -> None:
    payloads = await _fill(tmp_path, 6)
    segment = _largest_segment(tmp_path)
    with segment.open("r+b") as f:  # written before segments were zero-filled ahead
        f.write(b"SGOUTBX\x01")

    async with _reopened(tmp_path) as outbox:
        assert outbox.recovery is not None and outbox.recovery.problems == []
        assert await _read_all(outbox) == payloads


async def test_sealed_segments_end_at_their_last_frame_and_read_in_order(tmp_path: Path) -> None:
    outbox = await Outbox.open(OutboxConfig(tmp_path, segment_bytes=4096))
    payloads = [canonical_json(make_record()) for _ in range(30)]
    try:
        for payload in payloads:
            await outbox.append_payload(payload)
        segments = list_segments(tmp_path)
        assert len(segments) > 3
        for index in segments[:-1]:  # sealed: no zero-filled tail left behind
            data = segment_path(tmp_path, index).read_bytes()
            frames = [i for i in iter_frames(data, 8) if isinstance(i, Frame)]
            assert frames and frames[-1].end == len(data)
        assert await _read_all(outbox) == payloads
    finally:
        await outbox.close()


async def test_without_preallocation_a_segment_holds_only_its_frames(tmp_path: Path) -> None:
    outbox = await Outbox.open(OutboxConfig(tmp_path, preallocate=False))
    payloads = [canonical_json(make_record()) for _ in range(5)]
    try:
        for payload in payloads:
            await outbox.append_payload(payload)
        await asyncio.sleep(0.2)
        written = 8 + sum(len(frame(p)) for p in payloads)
        assert _largest_segment(tmp_path).stat().st_size == written
        assert await _read_all(outbox) == payloads
    finally:
        await outbox.close()
