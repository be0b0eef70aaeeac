"""Findings of the gateway's fuzz suite (issue 20), each pinned by a focused test."""

from __future__ import annotations

import grpc
import pytest

from gateway.decisions.validation import FeatureValidator
from gateway.errors import FieldViolation, InvalidRequest, status_for
from gateway.limits import MAX_MESSAGE_BYTES
from runtimes.manifest import Manifest
from runtimes.training.datasets import sample_requests


def _grpc_message_bytes(message: str) -> int:
    """As sent: UTF-8, percent-encoded outside printable ASCII and for '%'."""
    data = message.encode()
    return len(data) + 2 * sum(1 for b in data if b < 0x20 or b > 0x7E or b == 0x25)


# --- Findings of the fuzz suite, each pinned by a focused test -----------------------------


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("", "features.''"),
        (" ", "features.' '"),
        ("amount ", "features.'amount '"),
        ("\u200b", "features.'\\u200b'"),
        ("\xa0amount", "features.'\\xa0amount'"),
        ("montant_é", "features.montant_é"),  # printable: as it is
    ],
)
def test_an_unknown_feature_whose_name_would_not_read_in_a_path_is_quoted(
    manifests: dict[tuple[str, str], Manifest], name: str, field: str
) -> None:
    """Finding (seed 20): an unknown feature named "" was reported as the field `features.`,
    naming nothing; " " and a zero-width space looked the same."""
    validator = FeatureValidator(manifests[("card-fraud", "1")])
    features = {**sample_requests("card-fraud", 1, seed=1)[0], name: 1.0}
    with pytest.raises(InvalidRequest) as refused:
        validator.validate(features)
    assert [v.field for v in refused.value.violations] == [field]


def _wire_bytes(status: grpc.Status) -> int:
    """A status's trailers as a client's metadata limit counts them (base64 for -bin)."""
    size = len("grpc-status") + 2 + 32 + len("grpc-message") + 32
    size += _grpc_message_bytes(status.details)
    for key, value in status.trailing_metadata:
        size += len(key) + 32 + (-(-len(value) * 4 // 3) if key.endswith("-bin") else len(value))
    return size


@pytest.mark.parametrize("char", ["😀", "中", "%", "\x00", "a"])
def test_a_refusal_is_bounded_in_bytes_as_sent_not_in_characters(char: str) -> None:
    """Finding (seed 20): eight unknown features with 64 four-byte characters each made a
    refusal's trailers ~11.9 KB (the message percent-encoded, and again in the details), over a
    default client's 8 KiB: the client failed the call with RESOURCE_EXHAUSTED."""
    violations = [
        FieldViolation(f"features.{chr(0x1F600 + i) if char == '😀' else char}" + char * 200,
                       "unknown feature " + char * 300)
        for i in range(20)
    ]  # fmt: skip
    status = status_for(InvalidRequest(violations))
    assert _grpc_message_bytes(status.details) <= MAX_MESSAGE_BYTES
    assert _wire_bytes(status) <= 7 * 1024  # room under 8 KiB for :status and content-type
    assert status.details.startswith("invalid request (20 problems, 8 shown): features.")
