"""Framing and recovery: what a crash leaves on disk is found, cut and kept; nothing else moves."""

from __future__ import annotations

from pathlib import Path

from outbox_support import make_record

from gateway.outbox import Outbox, OutboxConfig, canonical_json
from gateway.outbox.framing import Frame, ScanEnd, frame, iter_frames
from gateway.outbox.segments import list_segments, segment_path
from governance.record import canonical_record_json


async def _fill(directory: Path, count: int) -> list[bytes]:
    outbox = await Outbox.open(OutboxConfig(directory))
    payloads = [canonical_json(make_record()) for _ in range(count)]
    for payload in payloads:
        await outbox.append_payload(payload)
    await outbox.close()
    return payloads


async def _read_all(outbox: Outbox) -> list[bytes]:
    payloads: list[bytes] = []
    while entries := await outbox.next_batch(1000, 1 << 20, wait=False):
        payloads += [e.payload for e in entries]
        await outbox.acknowledge(entries[-1].end, len(entries), sum(e.size for e in entries))
    return payloads


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
    payloads = await _fill(tmp_path, 10)
    segment = _largest_segment(tmp_path)
    full = segment.stat().st_size
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
