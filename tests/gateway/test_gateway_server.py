"""The real gateway process in front of the real runtime process, called over gRPC."""

from __future__ import annotations

import math
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from loadtests.local.topology import ManagedProcess, TopologyError, start_gateway, start_runtime
from runtimes.manifest import Manifest
from runtimes.training.datasets import sample_requests
from scoring.v1 import scoring_pb2, scoring_pb2_grpc
from scoring.v1.requests import score_batch_columns_request, score_batch_request, score_request

Config = dict[str, Any]


@pytest.fixture
def scoring(channel: grpc.aio.Channel) -> scoring_pb2_grpc.ScoringServiceStub:
    return scoring_pb2_grpc.ScoringServiceStub(channel)


def _request(point: str = "card-fraud", seed: int = 31, **kw: Any) -> scoring_pb2.ScoreRequest:
    features = sample_requests(point, 1, seed=seed)[0]
    request_id, decision_point = kw.pop("request_id", "core-1"), kw.pop("decision_point", point)
    return score_request(request_id, decision_point, "cust-1", features, **kw)


def _violated_fields(error: grpc.aio.AioRpcError) -> list[str]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    bad = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad)
    return [v.field for v in bad.field_violations]


async def test_a_score_answers_with_every_field(
    scoring: scoring_pb2_grpc.ScoringServiceStub, manifests: dict[tuple[str, str], Manifest]
) -> None:
    before_us = time.time_ns() // 1000
    response = await scoring.Score(_request(request_id="core-77"), timeout=5)
    after_us = time.time_ns() // 1000

    champion = manifests[("card-fraud", "1")]
    assert len(response.decision_id) == 36 and response.decision_id[14] == "7"
    assert response.request_id == "core-77"
    assert response.decision_point == "card-fraud"
    assert 0.0 <= response.score <= 1.0
    expected = (
        "approve" if response.score < 0.5 else "review" if response.score < 0.85 else "decline"
    )
    assert response.decision == expected
    assert (response.model_name, response.model_version) == ("card-fraud", "1")
    assert response.model_sha256 == champion.artifact_sha256
    assert response.arm == "primary"
    assert response.fallback_reason == ""
    assert list(response.reason_codes) == []
    assert len(response.trace_id) == 32 and int(response.trace_id, 16) != 0
    assert response.policy_version == "card-fraud-policy-1"
    assert before_us <= response.decided_at.ToMicroseconds() <= after_us


async def test_decision_ids_grow_with_time(scoring: scoring_pb2_grpc.ScoringServiceStub) -> None:
    ids = [(await scoring.Score(_request(seed=s), timeout=5)).decision_id for s in range(5)]
    assert sorted(ids) == ids and len(set(ids)) == 5


async def test_credit_risk_is_scored_by_its_own_model(
    scoring: scoring_pb2_grpc.ScoringServiceStub, manifests: dict[tuple[str, str], Manifest]
) -> None:
    response = await scoring.Score(_request("credit-risk"), timeout=5)
    assert response.model_name == "credit-risk"
    assert response.model_sha256 == manifests[("credit-risk", "1")].artifact_sha256
    assert response.policy_version == "credit-risk-policy-1"


async def test_a_pinned_version_answers_from_that_version(
    scoring: scoring_pb2_grpc.ScoringServiceStub, manifests: dict[tuple[str, str], Manifest]
) -> None:
    v1 = await scoring.Score(_request(seed=40), timeout=5)
    v2 = await scoring.Score(_request(seed=40, model_version="2"), timeout=5)
    assert (v2.model_version, v2.arm) == ("2", "pinned")
    assert v2.model_sha256 == manifests[("card-fraud", "2")].artifact_sha256
    assert v2.score != v1.score  # genuinely another model


BAD_FEATURES: list[tuple[str, Callable[[dict[str, Any]], object], str]] = [
    ("nan", lambda f: f.update(amount=math.nan), "features.amount"),
    ("inf", lambda f: f.update(distance_from_home_km=math.inf), "features.distance_from_home_km"),
    ("missing", lambda f: f.pop("merchant_category"), "features.merchant_category"),
    ("unknown", lambda f: f.update(loyalty_tier="gold"), "features.loyalty_tier"),
    ("out-of-range", lambda f: f.update(hour_of_day=31.0), "features.hour_of_day"),
    ("bad-category", lambda f: f.update(channel="carrier-pigeon"), "features.channel"),
    ("mistyped", lambda f: f.update(card_present="yes"), "features.card_present"),
]


@pytest.mark.parametrize(
    ("change", "field"), [b[1:] for b in BAD_FEATURES], ids=[b[0] for b in BAD_FEATURES]
)
async def test_bad_features_get_invalid_argument_naming_the_field(
    scoring: scoring_pb2_grpc.ScoringServiceStub,
    change: Callable[[dict[str, Any]], object],
    field: str,
) -> None:
    features = dict(sample_requests("card-fraud", 1, seed=33)[0])
    change(features)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await scoring.Score(score_request("core-2", "card-fraud", "c-1", features), timeout=5)
    error = info.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in (error.details() or "")
    assert _violated_fields(error) == [field]


async def test_an_unset_feature_value_counts_as_missing(
    scoring: scoring_pb2_grpc.ScoringServiceStub,
) -> None:
    request = _request()
    request.features["amount"].Clear()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await scoring.Score(request, timeout=5)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "features.amount: required feature is missing" in (info.value.details() or "")


@pytest.mark.parametrize(
    ("request_", "code", "named"),
    [
        (_request(decision_point="mortgage"), grpc.StatusCode.NOT_FOUND, "decision_point"),
        (_request(model_version="9"), grpc.StatusCode.NOT_FOUND, "model_version"),
        (_request(request_id=""), grpc.StatusCode.INVALID_ARGUMENT, "request_id"),
        (_request(request_id="x" * 129), grpc.StatusCode.INVALID_ARGUMENT, "request_id"),
        (scoring_pb2.ScoreRequest(request_id="r"), grpc.StatusCode.INVALID_ARGUMENT, "entity_key"),
    ],
    ids=["unknown-point", "unknown-version", "no-request-id", "long-request-id", "empty"],
)
async def test_requests_that_cannot_be_routed_are_refused_naming_the_field(
    scoring: scoring_pb2_grpc.ScoringServiceStub,
    request_: scoring_pb2.ScoreRequest,
    code: grpc.StatusCode,
    named: str,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await scoring.Score(request_, timeout=5)
    assert info.value.code() == code
    assert named in (info.value.details() or "")


async def test_health_is_serving(channel: grpc.aio.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "scoring.v1.ScoringService"):
        reply = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_lists_the_services(channel: grpc.aio.Channel) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    replies = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
    )
    names = {s.name async for reply in replies for s in reply.list_services_response.service}
    assert {"scoring.v1.ScoringService", "grpc.health.v1.Health"} <= names


async def test_with_the_runtime_gone_score_fails_fast_naming_model_and_endpoint(
    model_dir: Path,
    demo_config: Callable[[str], Config],
    write_routes: Callable[[Path, Config], Path],
    tmp_path: Path,
) -> None:
    runtime = start_runtime(model_dir, tmp_path)
    routes = write_routes(tmp_path / "routes.yaml", demo_config(runtime.address))
    gateway = start_gateway(routes, model_dir, tmp_path)
    try:
        async with grpc.aio.insecure_channel(gateway.address) as channel:
            stub = scoring_pb2_grpc.ScoringServiceStub(channel)
            await stub.Score(_request("credit-risk"), timeout=5)  # channels are up
            assert runtime.stop() == 0
            for _ in range(3):
                started = time.monotonic()
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await stub.Score(_request("credit-risk"), timeout=5)
                assert time.monotonic() - started < 1.0
                assert info.value.code() == grpc.StatusCode.UNAVAILABLE
                details = info.value.details() or ""
                assert f"model credit-risk-v1 at {runtime.address} unavailable" in details
    finally:
        runtime.kill()
        assert gateway.stop() == 0, gateway.log_tail()


async def test_a_bad_routing_config_stops_the_gateway_naming_the_path(
    runtime: ManagedProcess,
    model_dir: Path,
    demo_config: Callable[[str], Config],
    write_routes: Callable[[Path, Config], Path],
    tmp_path: Path,
) -> None:
    config = demo_config(runtime.address)
    config["decision_points"]["card-fraud"]["policy"]["review_at"] = 0.95
    routes = write_routes(tmp_path / "routes.yaml", config)
    with pytest.raises(TopologyError) as info:
        start_gateway(routes, model_dir, tmp_path)
    assert "exited with code 2" in str(info.value)
    assert "decision_points.card-fraud.policy.review_at" in str(info.value)


def test_sigterm_drains_and_exits_zero(
    runtime: ManagedProcess,
    model_dir: Path,
    demo_config: Callable[[str], Config],
    write_routes: Callable[[Path, Config], Path],
    tmp_path: Path,
) -> None:
    routes = write_routes(tmp_path / "routes.yaml", demo_config(runtime.address))
    gateway = start_gateway(routes, model_dir, tmp_path)
    started = time.monotonic()
    assert gateway.stop() == 0
    assert time.monotonic() - started < 5
    assert "stopped" in gateway.log_tail()
    assert isinstance(gateway.popen, subprocess.Popen)


@pytest.mark.parametrize("point", ["card-fraud", "credit-risk"])
async def test_score_batch_rows_equal_the_same_rows_scored_one_by_one(
    scoring: scoring_pb2_grpc.ScoringServiceStub, point: str
) -> None:
    samples = sample_requests(point, 40, seed=77)
    rows = [(f"b-{i}", f"cust-{i}", f) for i, f in enumerate(samples)]
    batch = await scoring.ScoreBatch(score_batch_request(point, rows), timeout=5)
    assert len(batch.results) == len(rows)
    ids = set()
    for (request_id, entity, features), result in zip(rows, batch.results, strict=True):
        assert result.WhichOneof("result") == "decision"
        got = result.decision
        one = await scoring.Score(score_request(request_id, point, entity, features), timeout=5)
        assert got.request_id == request_id
        assert got.score == pytest.approx(one.score, abs=1e-6)
        assert (got.decision, got.model_name, got.model_version, got.model_sha256, got.arm) == (
            one.decision, one.model_name, one.model_version, one.model_sha256, one.arm,
        )  # fmt: skip
        ids.add(got.decision_id)
    assert len(ids) == len(rows)  # each row is its own decision


async def test_a_bad_batch_row_gets_its_own_error_and_the_others_are_scored(
    scoring: scoring_pb2_grpc.ScoringServiceStub,
) -> None:
    good, bad = sample_requests("card-fraud", 2, seed=78)
    bad = {**bad, "amount": -5.0}
    rows = [("r-0", "c-0", good), ("r-1", "c-1", bad), ("", "c-2", good)]
    batch = await scoring.ScoreBatch(score_batch_request("card-fraud", rows), timeout=5)
    kinds = [r.WhichOneof("result") for r in batch.results]
    assert kinds == ["decision", "error", "error"]
    assert batch.results[1].error.code == "INVALID_ARGUMENT"
    assert "rows[1].features.amount" in batch.results[1].error.message
    assert "rows[2].request_id" in batch.results[2].error.message


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        (score_batch_request("mortgage", []), grpc.StatusCode.NOT_FOUND),
        (score_batch_request("card-fraud", [], model_version="9"), grpc.StatusCode.NOT_FOUND),
        (
            score_batch_request("card-fraud", [("r", "c", {})] * 1001),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
    ],
    ids=["unknown-point", "unknown-version", "too-many-rows"],
)
async def test_a_batch_that_cannot_be_routed_fails_as_a_whole(
    scoring: scoring_pb2_grpc.ScoringServiceStub,
    request_: scoring_pb2.ScoreBatchRequest,
    code: grpc.StatusCode,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await scoring.ScoreBatch(request_, timeout=5)
    assert info.value.code() == code


@pytest.mark.parametrize("point", ["card-fraud", "credit-risk"])
async def test_the_columnar_form_scores_exactly_as_the_row_form(
    scoring: scoring_pb2_grpc.ScoringServiceStub, point: str
) -> None:
    samples = sample_requests(point, 60, seed=91)
    rows = [(f"c-{i}", f"cust-{i}", f) for i, f in enumerate(samples)]
    by_rows = await scoring.ScoreBatch(score_batch_request(point, rows), timeout=5)
    request = score_batch_columns_request(point, rows)
    # Columns are the smaller message: names once, numbers packed.
    assert request.ByteSize() < score_batch_request(point, rows).ByteSize() / 2
    by_columns = await scoring.ScoreBatch(request, timeout=5)
    assert len(by_columns.results) == len(rows)
    for (request_id, _, _), a, b in zip(rows, by_rows.results, by_columns.results, strict=True):
        assert b.WhichOneof("result") == "decision"
        assert b.decision.request_id == request_id
        assert b.decision.score == pytest.approx(a.decision.score, abs=1e-9)
        assert (b.decision.decision, b.decision.model_version, b.decision.arm) == (
            a.decision.decision, a.decision.model_version, a.decision.arm,
        )  # fmt: skip
        assert b.decision.decision_id != a.decision.decision_id


async def test_a_bad_value_in_a_column_fails_only_its_row(
    scoring: scoring_pb2_grpc.ScoringServiceStub,
) -> None:
    samples = sample_requests("card-fraud", 3, seed=92)
    rows = [(f"v-{i}", f"cust-{i}", f) for i, f in enumerate(samples)]
    request = score_batch_columns_request("card-fraud", rows)
    amount = next(c for c in request.columns.features if c.name == "amount")
    amount.numbers.values[1] = math.nan
    amount.missing_rows.append(2)  # a required feature, missing in row 2 only
    batch = await scoring.ScoreBatch(request, timeout=5)
    assert [r.WhichOneof("result") for r in batch.results] == ["decision", "error", "error"]
    assert batch.results[1].error.code == "INVALID_ARGUMENT"
    assert "rows[1].features.amount: must be a finite number, got NaN" in (
        batch.results[1].error.message
    )
    assert "rows[2].features.amount: required feature is missing" in (
        batch.results[2].error.message
    )


def _columns(rows: int = 3) -> scoring_pb2.ScoreBatchRequest:
    samples = sample_requests("card-fraud", rows, seed=93)
    return score_batch_columns_request(
        "card-fraud", [(f"s-{i}", f"cust-{i}", f) for i, f in enumerate(samples)]
    )


def _short_column(request: scoring_pb2.ScoreBatchRequest) -> str:
    index, column = next((i, c) for i, c in enumerate(request.columns.features) if c.numbers.values)
    del column.numbers.values[-1]
    return f"columns.features[{index}].numbers"


def _duplicate_column(request: scoring_pb2.ScoreBatchRequest) -> str:
    request.columns.features.append(request.columns.features[0])
    return f"columns.features[{len(request.columns.features) - 1}].name"


def _missing_row_out_of_range(request: scoring_pb2.ScoreBatchRequest) -> str:
    request.columns.features[0].missing_rows.append(3)
    return "columns.features[0].missing_rows"


def _column_without_values(request: scoring_pb2.ScoreBatchRequest) -> str:
    request.columns.features.add(name="amount_2")
    return f"columns.features[{len(request.columns.features) - 1}]"


def _entity_keys_short(request: scoring_pb2.ScoreBatchRequest) -> str:
    del request.columns.entity_keys[0]
    return "columns.entity_keys"


def _both_forms(request: scoring_pb2.ScoreBatchRequest) -> str:
    request.rows.add(request_id="r", entity_key="c")
    return "columns"


@pytest.mark.parametrize(
    "break_",
    [
        _short_column,
        _duplicate_column,
        _missing_row_out_of_range,
        _column_without_values,
        _entity_keys_short,
        _both_forms,
    ],
)
async def test_a_badly_shaped_columnar_batch_fails_as_a_whole_naming_the_column(
    scoring: scoring_pb2_grpc.ScoringServiceStub,
    break_: Callable[[scoring_pb2.ScoreBatchRequest], str],
) -> None:
    request = _columns()
    field = break_(request)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await scoring.ScoreBatch(request, timeout=5)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _violated_fields(info.value) == [field]
    assert field in (info.value.details() or "")


async def test_a_columnar_batch_of_more_than_1000_rows_is_refused(
    scoring: scoring_pb2_grpc.ScoringServiceStub,
) -> None:
    request = scoring_pb2.ScoreBatchRequest(decision_point="card-fraud")
    request.columns.request_ids.extend(f"r-{i}" for i in range(1001))
    request.columns.entity_keys.extend(f"c-{i}" for i in range(1001))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await scoring.ScoreBatch(request, timeout=5)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _violated_fields(info.value) == ["columns.request_ids"]
