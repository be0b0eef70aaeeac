"""Segment files on disk: naming, the acknowledgement cursor, recovery and reading.

Segments are ``<index>.seg`` (20 digits, so names sort in order) in the outbox directory; the
writer only ever appends to the newest one and starts a new one on each open. The cursor file
holds the position (segment, offset) up to which the lineage store has acknowledged; it is
rewritten in place with its own crc, so a torn cursor only means resending (the store is
idempotent). Recovery deletes segments before the cursor, and cuts every segment at its first
invalid frame, keeping the cut bytes in ``quarantine/`` rather than destroying them. A segment
whose frames end in zero-filled space that is zeros to the end (a crash before it was sealed) is
trimmed there: nothing is cut from it.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from gateway.outbox.errors import OutboxCorrupt
from gateway.outbox.framing import (
    FRAME_OVERHEAD,
    HEADER,
    MAX_PAYLOAD,
    READABLE_MAGICS,
    SEGMENT_MAGIC,
    ZERO_FILLED,
    Frame,
    iter_frames,
)

log = logging.getLogger(__name__)

SEGMENT_SUFFIX = ".seg"
CURSOR_FILE = "cursor"
QUARANTINE_DIR = "quarantine"
FIRST_OFFSET = len(SEGMENT_MAGIC)
_CURSOR = struct.Struct("<QQ")


@dataclass(frozen=True, slots=True, order=True)
class Position:
    """A byte position in the log: segment index, then offset in that segment's file."""

    segment: int
    offset: int


def segment_path(directory: Path, index: int) -> Path:
    return directory / f"{index:020d}{SEGMENT_SUFFIX}"


def list_segments(directory: Path) -> list[int]:
    indexes = []
    for path in directory.iterdir():
        if path.suffix == SEGMENT_SUFFIX and path.stem.isdigit():
            indexes.append(int(path.stem))
    return sorted(indexes)


def pwrite_all(fd: int, data: bytes | memoryview, offset: int) -> None:
    """Writes all of ``data`` at ``offset`` (pwrite may write less than asked)."""
    view = memoryview(data)
    end = offset + len(view)
    while view:
        view = view[os.pwrite(fd, view, end - len(view)) :]


def fsync_directory(directory: Path) -> None:
    """Makes file creations, renames and deletions in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Cursor:
    """The acknowledged position, persisted in place (16 bytes + crc32) and fdatasync'd."""

    def __init__(self, directory: Path) -> None:
        self._fd = os.open(directory / CURSOR_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        fsync_directory(directory)

    def load(self) -> Position:
        """The stored position; (0, 0) when there is none or it fails its crc."""
        data = os.pread(self._fd, _CURSOR.size + 4, 0)
        if len(data) == _CURSOR.size + 4:
            body, (crc,) = data[: _CURSOR.size], struct.unpack("<I", data[_CURSOR.size :])
            if zlib.crc32(body) == crc:
                return Position(*_CURSOR.unpack(body))
            log.warning("outbox cursor fails its crc: resending from the first segment")
        return Position(0, 0)

    def store(self, position: Position) -> None:
        body = _CURSOR.pack(position.segment, position.offset)
        os.pwrite(self._fd, body + struct.pack("<I", zlib.crc32(body)), 0)
        os.fdatasync(self._fd)

    def close(self) -> None:
        os.close(self._fd)


@dataclass(slots=True)
class Recovery:
    """What opening the directory found: the un-acknowledged backlog and what was cut."""

    start: Position
    next_segment: int
    records: int = 0
    bytes: int = 0
    deleted_segments: list[int] = field(default_factory=list)
    quarantined: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _quarantine(directory: Path, index: int, offset: int, data: bytes, problem: str) -> Path:
    folder = directory / QUARANTINE_DIR
    folder.mkdir(exist_ok=True)
    target = folder / f"{index:020d}-{offset}.bin"
    with target.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    fsync_directory(folder)
    return target


def _cut(directory: Path, index: int, offset: int, problem: str, last: bool, rec: Recovery) -> None:
    """Keeps ``[offset, end)`` of the segment in quarantine, then truncates it at ``offset``.
    Zero-filled space at the very end was never written, so it is not kept."""
    path = segment_path(directory, index)
    with path.open("rb") as f:
        f.seek(offset)
        tail = f.read().rstrip(b"\0")
    kept = _quarantine(directory, index, offset, tail, problem)
    _trim(path, offset)
    what = "torn tail (a write cut short by a crash)" if last else "corruption"
    message = (
        f"segment {index}: {what} at offset {offset} ({problem}); {len(tail)} bytes cut "
        f"and kept in {kept}"
    )
    (log.warning if last else log.error)("outbox recovery: %s", message)
    rec.quarantined.append(kept)
    rec.problems.append(message)


def _scan_segment(directory: Path, index: int, start: int, last: bool, rec: Recovery) -> None:
    path = segment_path(directory, index)
    size = path.stat().st_size
    with path.open("rb") as f:
        magic = f.read(FIRST_OFFSET)
    if magic not in READABLE_MAGICS:
        if last and SEGMENT_MAGIC.startswith(magic) and size == len(magic):
            # Created, header not (fully) written: no frame in it was ever durable.
            path.unlink()
            rec.deleted_segments.append(index)
            return
        _cut(directory, index, 0, "bad segment header", last, rec)
        path.unlink()
        rec.deleted_segments.append(index)
        return
    start = max(start, FIRST_OFFSET)
    if start > size:
        rec.problems.append(f"segment {index}: cursor offset {start} past its end {size}")
        log.error("outbox recovery: %s", rec.problems[-1])
        start = FIRST_OFFSET
    if size == start:
        return
    with path.open("rb") as f:
        data = f.read()  # one segment at a time: at most segment_bytes plus one group
    end, problem = start, ""
    for item in iter_frames(data, start):
        if isinstance(item, Frame):
            rec.records += 1
            rec.bytes += item.end - end
            end = item.end
        else:
            problem = item.problem
    if problem and not data[end:].strip(b"\0"):
        # Zeros only: space filled ahead and never written (a crash before sealing).
        _trim(path, end)
    elif problem:
        what = "frames after zero-filled space" if problem == ZERO_FILLED else problem
        _cut(directory, index, end, what, last, rec)


def _trim(path: Path, end: int) -> None:
    """Truncates a segment at ``end``, durably: its size is then where its valid frames end."""
    with path.open("r+b") as f:
        f.truncate(end)
        f.flush()
        os.fsync(f.fileno())


def recover(directory: Path, cursor: Position) -> Recovery:
    """Scans the un-acknowledged part of every segment; see the module docstring."""
    segments = list_segments(directory)
    rec = Recovery(start=cursor, next_segment=max([*segments, cursor.segment]) + 1)
    for index in segments:
        if index < cursor.segment:
            segment_path(directory, index).unlink()
            rec.deleted_segments.append(index)
    remaining = [i for i in segments if i >= cursor.segment]
    for index in remaining:
        start = cursor.offset if index == cursor.segment else FIRST_OFFSET
        _scan_segment(directory, index, start, index == remaining[-1], rec)
    if rec.deleted_segments:
        fsync_directory(directory)
    alive = [i for i in remaining if i not in rec.deleted_segments]
    if alive and alive[0] != cursor.segment:
        rec.start = Position(alive[0], FIRST_OFFSET)
    elif alive:
        rec.start = Position(cursor.segment, max(cursor.offset, FIRST_OFFSET))
    else:
        rec.start = Position(rec.next_segment, FIRST_OFFSET)
    return rec


@dataclass(frozen=True, slots=True)
class Entry:
    """One durable record read back: its payload and the position just past its frame."""

    payload: bytes
    end: Position

    @property
    def size(self) -> int:
        return len(self.payload) + FRAME_OVERHEAD


class SegmentReader:
    """Reads frames in log order, never past the durable position the writer published."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._index = -1
        self._fd = -1

    def _open(self, index: int) -> int:
        if index != self._index:
            self.close()
            self._fd = os.open(segment_path(self._directory, index), os.O_RDONLY)
            self._index = index
        return self._fd

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
        self._fd, self._index = -1, -1

    def next_segment(self, after: int) -> int | None:
        return next((i for i in list_segments(self._directory) if i > after), None)

    def read(
        self, at: Position, durable: Position, max_records: int, max_bytes: int
    ) -> tuple[list[Entry], Position]:
        """Entries from ``at`` (at most ``max_records``, about ``max_bytes``), and where the next
        read starts: past the last entry, or the next segment's start when ``at`` is at the end
        of a sealed one (with no entries)."""
        if at >= durable:
            return [], at
        fd = self._open(at.segment)
        sealed = at.segment < durable.segment
        end = os.fstat(fd).st_size if sealed else durable.offset
        if at.offset >= end:
            if not sealed:
                return [], at
            following = self.next_segment(at.segment)
            if following is None:
                raise OutboxCorrupt(f"segment {at.segment} is sealed but no segment follows it")
            return [], Position(following, FIRST_OFFSET)
        data = os.pread(fd, min(end - at.offset, max_bytes), at.offset)
        entries: list[Entry] = []
        for item in iter_frames(data):
            if isinstance(item, Frame):
                entries.append(Entry(item.payload, Position(at.segment, at.offset + item.end)))
                if len(entries) >= max_records:
                    break
            elif item.problem == "incomplete" and not entries:
                # One frame larger than max_bytes: read exactly that frame.
                entries = self._read_one(fd, at, end)
            elif item.problem and item.problem != "incomplete" and not entries:
                raise OutboxCorrupt(
                    f"segment {at.segment} offset {at.offset + item.offset}: {item.problem}"
                )
        return entries, entries[-1].end if entries else at

    def _read_one(self, fd: int, at: Position, end: int) -> list[Entry]:
        length, _ = HEADER.unpack(os.pread(fd, FRAME_OVERHEAD, at.offset))
        size = FRAME_OVERHEAD + length
        if length > MAX_PAYLOAD or at.offset + size > end:
            raise OutboxCorrupt(f"segment {at.segment} offset {at.offset}: frame runs past its end")
        frames = [f for f in iter_frames(os.pread(fd, size, at.offset)) if isinstance(f, Frame)]
        if not frames:
            raise OutboxCorrupt(f"segment {at.segment} offset {at.offset}: crc mismatch")
        return [Entry(frames[0].payload, Position(at.segment, at.offset + size))]
