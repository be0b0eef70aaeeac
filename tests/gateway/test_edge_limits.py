"""Every bad input gets a clear, bounded INVALID_ARGUMENT naming the field, at the edge of the
real gateway process, from a client with gRPC's default options (its 8 KiB metadata limit is
what an unbounded refusal used to break). Valid rows around a bad one are still answered."""

from __future__ import annotations

import random
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from gateway.limits import (
    MAX_BATCH_ROWS,
    MAX_ENTITY_KEY_CHARS,
    MAX_MESSAGE_BYTES,
    MAX_SCORE_BYTES,
    MAX_VIOLATIONS_SHOWN,
)
from loadtests.local.topology import ManagedProcess
from runtimes.training.datasets import sample_requests
from scoring.v1 import scoring_pb2, scoring_pb2_grpc
from scoring.v1.requests import score_batch_request, score_request

Config = dict[str, Any]
SCORE = "/scoring.v1.ScoringService/Score"
SCORE_BATCH = "/scoring.v1.ScoringService/ScoreBatch"


def _features(seed: int = 1) -> dict[str, Any]:
    return sample_requests("card-fraud", 1, seed=seed)[0]


async def _refused(call: Any) -> tuple[str, list[str]]:
    """The INVALID_ARGUMENT's message and the fields its BadRequest names."""
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call
    error = refused.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (error.code(), error.details())
    assert len((error.details() or "").encode()) <= MAX_MESSAGE_BYTES
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    fields: list[str] = []
    if status is not None:
        for detail in status.details:
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields.extend(v.field for v in bad.field_violations)
    return error.details() or "", fields


async def test_a_huge_category_value_is_named_not_echoed(channel: grpc.aio.Channel) -> None:
    stub = scoring_pb2_grpc.ScoringServiceStub(channel)
    features = {**_features(), "merchant_category": "x" * 8000}
    message, fields = await _refused(stub.Score(score_request("r", "card-fraud", "c", features)))
    assert fields == ["features.merchant_category"]
    assert "8,000 characters" in message


async def test_many_unknown_features_are_counted_not_listed(channel: grpc.aio.Channel) -> None:
    stub = scoring_pb2_grpc.ScoringServiceStub(channel)
    features = {**_features(), **{f"extra_{i:03d}_" + "n" * 90: 1.0 for i in range(70)}}
    message, fields = await _refused(stub.Score(score_request("r", "card-fraud", "c", features)))
    assert len(fields) == MAX_VIOLATIONS_SHOWN
    assert all(f.startswith("features.'extra_") or f.startswith("features.extra_") for f in fields)
    assert message.startswith(f"invalid request (70 problems, {MAX_VIOLATIONS_SHOWN} shown): ")


@pytest.mark.parametrize(
    ("field", "change"),
    [
        ("decision_point", {"decision_point": "p" * 20_000}),
        ("entity_key", {"entity_key": "k" * (1024 * 100)}),
        ("entity_key", {"entity_key": "cust\x001"}),
        ("request_id", {"request_id": "req\x00"}),
        ("model_version", {"model_version": "9" * 500}),
    ],
)
async def test_ids_and_keys_too_long_or_with_control_characters_are_refused(
    channel: grpc.aio.Channel, field: str, change: dict[str, str]
) -> None:
    stub = scoring_pb2_grpc.ScoringServiceStub(channel)
    values = {"request_id": "r", "decision_point": "card-fraud", "entity_key": "c", **change}
    request = score_request(
        values["request_id"], values["decision_point"], values["entity_key"], _features(),
        model_version=values.get("model_version", ""),
    )  # fmt: skip
    _, fields = await _refused(stub.Score(request))
    assert fields == [field]


async def test_a_batch_answers_every_good_row_around_bad_ones(channel: grpc.aio.Channel) -> None:
    stub = scoring_pb2_grpc.ScoringServiceStub(channel)
    rows = [(f"r{i}", f"c{i}", _features(i)) for i in range(20)]
    rows[3] = ("r3", "k" * (MAX_ENTITY_KEY_CHARS + 1), _features(3))
    rows[7] = ("r7", "c7", {**_features(7), "merchant_category": "y" * 1_000_000})
    rows[9] = ("r9", "c9", {**_features(9), **{f"u{i}" * 30: 1.0 for i in range(200)}})
    response = await stub.ScoreBatch(score_batch_request("card-fraud", rows))
    kinds = [r.WhichOneof("result") for r in response.results]
    assert kinds == ["error" if i in (3, 7, 9) else "decision" for i in range(20)]
    for i in (3, 7, 9):
        error = response.results[i].error
        assert error.code == "INVALID_ARGUMENT" and len(error.message.encode()) <= MAX_MESSAGE_BYTES
    assert "rows[3].entity_key" in response.results[3].error.message
    assert "rows[7].features.merchant_category" in response.results[7].error.message


async def test_too_many_rows_are_refused_before_any_is_read(channel: grpc.aio.Channel) -> None:
    stub = scoring_pb2_grpc.ScoringServiceStub(channel)
    row = scoring_pb2.ScoreBatchRow(request_id="r", entity_key="c")
    request = scoring_pb2.ScoreBatchRequest(decision_point="card-fraud")
    request.rows.extend([row] * (MAX_BATCH_ROWS + 1))
    message, fields = await _refused(stub.ScoreBatch(request))
    assert fields == ["rows"] and "1,001 rows" in message


async def test_a_request_over_its_methods_size_is_refused_by_name(
    channel: grpc.aio.Channel,
) -> None:
    call = channel.unary_unary(SCORE)
    message, _ = await _refused(call(b"\x0a" + b"\xff\xff\x0f" + b"a" * (MAX_SCORE_BYTES + 10)))
    assert "at most 262,144 for Score" in message


async def test_bodies_that_do_not_parse_are_invalid_argument_and_logged_once(
    channel: grpc.aio.Channel, gateway: ManagedProcess
) -> None:
    rng = random.Random(20)
    valid = score_request("r", "card-fraud", "c", _features()).SerializeToString()
    bodies = [bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 200))) for _ in range(60)] + [
        valid[:cut] for cut in range(1, len(valid), max(1, len(valid) // 20))
    ]
    bodies.append(b"\x0a\x03\xff\xfe\xfd")  # request_id (field 1) with invalid UTF-8
    refused = 0
    for method in (SCORE, SCORE_BATCH):
        call = channel.unary_unary(method)
        for body in bodies:
            try:
                await call(body)
            except grpc.aio.AioRpcError as e:
                # A body that happens to parse is refused for its content, not as UNKNOWN.
                assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, (e.code(), e.details(), body)
                refused += 1
    assert refused >= len(bodies)  # most of them: at least one per body on average
    log = gateway.log_path.read_text(errors="replace")
    assert "Traceback" not in log and "Unexpected" not in log
    assert log.count("malformed request body") <= 1
    # Healthy throughout: a valid call is still answered.
    stub = scoring_pb2_grpc.ScoringServiceStub(channel)
    assert (await stub.Score(score_request("ok", "card-fraud", "c", _features()))).decision_id
