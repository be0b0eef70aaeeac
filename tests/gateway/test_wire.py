"""The protobuf wire pieces the hot paths write by hand, against protobuf's own encoder."""

from __future__ import annotations

import pytest
from google.protobuf import wrappers_pb2

from gateway.wire import length_delimited, varint


@pytest.mark.parametrize(
    "n", [0, 1, 127, 128, 300, 2_047, 16_383, 16_384, 2**21 - 1, 2**21, 2**35 + 7, 2**63]
)
def test_varints_are_what_protobuf_writes(n: int) -> None:
    # UInt64Value{value = 1}: tag 0x08, then the value as a varint.
    expected = wrappers_pb2.UInt64Value(value=n).SerializeToString() if n else b""
    assert (b"\x08" + varint(n) if n else b"") == expected


def test_a_negative_number_is_refused() -> None:
    with pytest.raises(ValueError):
        varint(-1)


def test_a_length_delimited_field_is_what_protobuf_writes() -> None:
    payload = "é" * 9_000  # 18,000 bytes: a three-byte length
    expected = wrappers_pb2.StringValue(value=payload).SerializeToString()
    assert length_delimited(1, payload.encode()) == expected
