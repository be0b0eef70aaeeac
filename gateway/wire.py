"""Protobuf wire-format pieces for messages written as bytes on the hot path (OIP batch requests,
OTLP exports, the bench's request ids), where building message objects would cost more."""

from __future__ import annotations


def _encode_varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


# Every one- and two-byte varint, built at import and looked up: the OTLP export writes five per
# record, its lengths fit in two bytes, and a lookup is cheaper than encoding one
# (docs/performance-log.md).
_SMALL = tuple(_encode_varint(n) for n in range(1 << 14))


def varint(n: int) -> bytes:
    """A non-negative integer as a protobuf base-128 varint."""
    if 0 <= n < 16384:
        return _SMALL[n]
    return _encode_varint(n)


def length_delimited(number: int, payload: bytes) -> bytes:
    """Field ``number`` (wire type 2: bytes, string or message) holding ``payload``."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload
