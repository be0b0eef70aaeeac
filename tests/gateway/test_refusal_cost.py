"""Refusing costs what the refusal shows (issue 20's fuzz finding): a row of ~140 unknown
features, 1,000 such rows in one ScoreBatch, is refused with the first MAX_VIOLATIONS_SHOWN
violations and the count of all, without describing the rest, so the gateway's event loop is
not held while the refusal is built and other callers' Score calls are answered meanwhile.

The first tests check the validator in process; the last ones the real gateway, in both
ScoreBatch forms and Score, from a client with gRPC's default options.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from gateway.decisions.validation import FeatureValidator
from gateway.errors import FieldViolation, InvalidRequest, status_for
from gateway.limits import MAX_BATCH_ROWS, MAX_FEATURES, MAX_VIOLATIONS_SHOWN
from loadtests.local.topology import ManagedProcess
from runtimes.manifest import Manifest
from runtimes.training.datasets import sample_requests
from scoring.v1 import scoring_pb2, scoring_pb2_grpc
from scoring.v1.requests import score_batch_columns_request, score_batch_request, score_request

Config = dict[str, Any]
UNKNOWN = 140
SCORE_BATCH = "/scoring.v1.ScoringService/ScoreBatch"
ANSWERED_WITHIN_S = 0.3
"""A Score call's bound while a huge batch is refused: generous for a loopback call (a few ms),
with room for reading the batch's 141,000 feature values, which any request that size costs,
and well under how long building one violation per unknown feature held the event loop."""


def _features(seed: int = 1) -> dict[str, Any]:
    return dict(sample_requests("card-fraud", 1, seed=seed)[0])


def _unknown(count: int = UNKNOWN) -> dict[str, Any]:
    return {f"u{k:03d}": 1.0 for k in range(count)}


@pytest.fixture(scope="module")
def manifest(manifests: dict[tuple[str, str], Manifest]) -> Manifest:
    return manifests[("card-fraud", "1")]


@pytest.fixture(scope="module")
def card_fraud(manifest: Manifest) -> FeatureValidator:
    return FeatureValidator(manifest)


def _every_violation(manifest: Manifest, features: dict[str, Any]) -> list[FieldViolation]:
    """What validation reported before it was bounded: one violation per unknown name, sorted."""
    known = {f.name for f in manifest.features}
    described = f"unknown feature for model {manifest.served_name}"
    return [FieldViolation(f"features.{k}", described) for k in sorted(set(features) - known)]


def test_a_row_of_many_unknown_features_is_refused_with_the_shown_few_and_the_count(
    card_fraud: FeatureValidator, manifest: Manifest
) -> None:
    features = _features() | _unknown()
    with pytest.raises(InvalidRequest) as refused:
        card_fraud.validate(features)
    error = refused.value
    assert error.count == UNKNOWN
    assert [v.field for v in error.violations] == [
        f"features.u{k:03d}" for k in range(MAX_VIOLATIONS_SHOWN)
    ]
    # What the caller sees is what it saw when every violation was built.
    everything = InvalidRequest(_every_violation(manifest, features))
    assert error.message == everything.message
    assert error.message.startswith(f"invalid request ({UNKNOWN} problems, 8 shown): ")
    assert status_for(error).trailing_metadata == status_for(everything).trailing_metadata


def test_schema_violations_come_first_and_are_counted_with_the_unknown_names(
    card_fraud: FeatureValidator,
) -> None:
    features = _features() | _unknown() | {"amount": -1.0, "channel": "pigeon"}
    with pytest.raises(InvalidRequest) as refused:
        card_fraud.validate(features)
    error = refused.value
    assert error.count == UNKNOWN + 2
    fields = [v.field for v in error.violations]
    assert fields[:2] == ["features.amount", "features.channel"]
    assert fields[2:] == [f"features.u{k:03d}" for k in range(MAX_VIOLATIONS_SHOWN - 2)]
    assert error.message.startswith(f"invalid request ({UNKNOWN + 2} problems, 8 shown): ")


def test_a_batch_of_such_rows_keeps_only_what_each_row_error_shows(
    card_fraud: FeatureValidator,
) -> None:
    """1,000 rows of 140 unknown features: 8 violations kept per row, not 140,000 in all."""
    features = _features() | _unknown()
    kept = counted = 0
    for _ in range(MAX_BATCH_ROWS):
        with pytest.raises(InvalidRequest) as refused:
            card_fraud.validate(features)
        kept += len(refused.value.violations)
        counted += refused.value.count
    assert (kept, counted) == (MAX_BATCH_ROWS * MAX_VIOLATIONS_SHOWN, MAX_BATCH_ROWS * UNKNOWN)


# --- The real gateway -------------------------------------------------------------------------


def _heavy_rows() -> list[tuple[str, str, dict[str, Any]]]:
    return [(f"r{i}", f"c{i}", _features(i) | _unknown()) for i in range(MAX_BATCH_ROWS)]


def _check_row_errors(response: scoring_pb2.ScoreBatchResponse) -> None:
    assert len(response.results) == MAX_BATCH_ROWS
    for i, result in enumerate(response.results):
        assert result.WhichOneof("result") == "error", i
        assert result.error.code == "INVALID_ARGUMENT"
        head = f"invalid request ({UNKNOWN} problems, 8 shown): rows[{i}].features.u000: "
        assert result.error.message.startswith(head), result.error.message[:200]
        assert f"rows[{i}].features.u007: " in result.error.message


@pytest.mark.parametrize("form", ["rows", "columns"])
async def test_a_huge_batch_is_refused_row_by_row_as_bounded_as_ever(
    channel: grpc.aio.Channel, form: str
) -> None:
    build = score_batch_request if form == "rows" else score_batch_columns_request
    stub = scoring_pb2_grpc.ScoringServiceStub(channel)
    _check_row_errors(await stub.ScoreBatch(build("card-fraud", _heavy_rows()), timeout=10))


async def test_a_score_call_of_many_unknown_features_is_refused_with_the_count(
    channel: grpc.aio.Channel,
) -> None:
    stub = scoring_pb2_grpc.ScoringServiceStub(channel)
    request = score_request("r", "card-fraud", "c", _features() | _unknown())
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.Score(request, timeout=5)
    error = refused.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (error.details() or "").startswith(f"invalid request ({UNKNOWN} problems, 8 shown): ")
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    bad = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad)
    assert [v.field for v in bad.field_violations] == [
        f"features.u{k:03d}" for k in range(MAX_VIOLATIONS_SHOWN)
    ]


async def test_more_columns_than_a_row_may_have_features_are_refused_unread(
    channel: grpc.aio.Channel,
) -> None:
    """3 MiB holds ~1.5 million empty columns: each used to be read and described."""
    request = scoring_pb2.ScoreBatchRequest(decision_point="card-fraud")
    request.columns.request_ids.append("r")
    request.columns.entity_keys.append("c")
    for _ in range(500_000):
        request.columns.features.add()
    stub = scoring_pb2_grpc.ScoringServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.ScoreBatch(request, timeout=10)
    error = refused.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == (
        f"invalid request: columns.features: 500,000 columns; at most {MAX_FEATURES} "
        "(features per row)"
    )


async def test_other_callers_are_answered_while_a_huge_batch_is_refused(
    channel: grpc.aio.Channel, gateway: ManagedProcess
) -> None:
    """Score calls on their own channel, one after another, while the gateway refuses three
    batches of 1,000 rows x 140 unknown features (sent as bytes: no client work meanwhile)."""
    body = score_batch_request("card-fraud", _heavy_rows()).SerializeToString()
    batch = channel.unary_unary(SCORE_BATCH)  # identity serializers: the bytes as they are
    valid = score_request("ok", "card-fraud", "c", _features())
    slowest = 0.0
    async with grpc.aio.insecure_channel(gateway.address) as other:
        stub = scoring_pb2_grpc.ScoringServiceStub(other)
        await stub.Score(valid, timeout=5)  # connected and warm
        for _ in range(3):
            refusing = asyncio.ensure_future(batch(body, timeout=10))
            while not refusing.done():
                asked = time.monotonic()
                assert (await stub.Score(valid, timeout=5)).decision_id
                slowest = max(slowest, time.monotonic() - asked)
            _check_row_errors(scoring_pb2.ScoreBatchResponse.FromString(await refusing))
    print(f"slowest Score call while a huge batch was refused: {slowest * 1000:.0f} ms")
    assert slowest < ANSWERED_WITHIN_S
