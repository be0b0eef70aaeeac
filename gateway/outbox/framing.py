"""The on-disk format: segment files of length-and-crc framed records.

A segment starts with ``SEGMENT_MAGIC`` (8 bytes, the format's version in its last byte) and then
holds frames back to back::

    u32 little-endian payload length | u32 little-endian crc32(payload) | payload

The payload is a decision record's canonical JSON, never empty. A frame is valid only if its
header is complete, its length is within ``MAX_PAYLOAD`` and its crc matches; ``scan`` stops at the
first invalid frame, which after a crash is the torn tail of the last segment.

Version 2 segments are zero-filled ahead of the writer (``gateway.outbox.prealloc``), so a
length of 0 is where the written frames end (``ZERO_FILLED``): after a crash, the rest of the
segment should be zeros. Version 1 segments (appended only) are read the same way.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

SEGMENT_MAGIC = b"SGOUTBX\x02"
# Segments this code reads: version 1 differs only in never holding zero-filled space.
READABLE_MAGICS = (SEGMENT_MAGIC, b"SGOUTBX\x01")
# ScanEnd.problem for a zero length: the end of the written frames in a zero-filled segment.
ZERO_FILLED = "zero-filled"
HEADER = struct.Struct("<II")
FRAME_OVERHEAD = HEADER.size
# A decision record is ~1-2 KiB; a length past this is garbage. Kept well under gRPC's 4 MiB
# default receive limit so that any record fits in an Export.
MAX_PAYLOAD = 1024 * 1024


def frame(payload: bytes) -> bytes:
    if not payload:
        raise ValueError("an empty record cannot be framed")
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"record of {len(payload)} bytes exceeds the {MAX_PAYLOAD}-byte limit")
    return HEADER.pack(len(payload), zlib.crc32(payload)) + payload


@dataclass(frozen=True, slots=True)
class Frame:
    """A valid frame in a buffer: its payload and the offset just past it."""

    payload: bytes
    end: int


@dataclass(frozen=True, slots=True)
class ScanEnd:
    """Where valid frames stop in a buffer, and why (``""`` when the buffer ends cleanly)."""

    offset: int
    problem: str = ""


def iter_frames(data: bytes | memoryview, start: int = 0) -> Iterator[Frame | ScanEnd]:
    """Yields each valid frame from ``start``, then one ScanEnd.

    A frame cut off by the end of ``data`` ends the scan with problem ``"incomplete"``: for a
    reader that is "read more", for recovery it is a torn tail.
    """
    view = memoryview(data)
    offset, size = start, len(view)
    while offset < size:
        if size - offset < FRAME_OVERHEAD:
            yield ScanEnd(offset, "incomplete")
            return
        length, crc = HEADER.unpack_from(view, offset)
        if length == 0:
            yield ScanEnd(offset, ZERO_FILLED)
            return
        if length > MAX_PAYLOAD:
            yield ScanEnd(offset, f"length {length} over the limit")
            return
        end = offset + FRAME_OVERHEAD + length
        if end > size:
            yield ScanEnd(offset, "incomplete")
            return
        payload = bytes(view[offset + FRAME_OVERHEAD : end])
        if zlib.crc32(payload) != crc:
            yield ScanEnd(offset, "crc mismatch")
            return
        yield Frame(payload, end)
        offset = end
    yield ScanEnd(offset)
