"""Protobuf wire-format pieces for messages written as bytes on the hot path (OIP batch requests,
OTLP exports, the bench's request ids), where building message objects would cost more."""

from __future__ import annotations


def varint(n: int) -> bytes:
    """A non-negative integer as a protobuf base-128 varint."""
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def length_delimited(number: int, payload: bytes) -> bytes:
    """Field ``number`` (wire type 2: bytes, string or message) holding ``payload``."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload
