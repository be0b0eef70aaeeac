"""A core-banking Score call through the real gateway, runtime and lineage store processes."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import grpc
import pytest
from support.stored import get_when_stored

from lineage.v1 import lineage_pb2_grpc
from lineage.v1.record import features_sha256
from loadtests.local.topology import Topology
from runtimes.manifest import load_manifests
from runtimes.training.datasets import sample_requests
from scoring.v1 import scoring_pb2_grpc
from scoring.v1.requests import FeatureInput, score_request


def _snapshot(features: Mapping[str, FeatureInput]) -> dict[str, float | str | bool]:
    return {k: v if isinstance(v, bool | str) else float(v) for k, v in features.items()}


async def test_score_answers_with_the_manifest_model_and_lineage_keeps_it(
    topology: Topology,
    scoring: scoring_pb2_grpc.ScoringServiceStub,
    lineage: lineage_pb2_grpc.LineageServiceStub,
) -> None:
    manifests = load_manifests(topology.model_dir)
    features = sample_requests("card-fraud", 1, seed=11)[0]
    request = score_request("core-42", "card-fraud", "cust-0042", features)

    response = await scoring.Score(request, timeout=5)

    champion = manifests[("card-fraud", "1")]
    assert len(response.decision_id) == 36
    assert response.request_id == "core-42"
    assert response.decision_point == "card-fraud"
    assert 0.0 <= response.score <= 1.0
    assert response.decision in {"approve", "review", "decline"}
    assert (response.model_name, response.model_version) == ("card-fraud", "1")
    assert response.model_sha256 == champion.artifact_sha256
    assert response.arm == "primary"
    assert response.fallback_reason == ""
    assert len(response.trace_id) == 32 and int(response.trace_id, 16) != 0
    assert response.policy_version == "card-fraud-policy-1"
    assert response.decided_at.ToMicroseconds() > 0

    record = await get_when_stored(lineage, response.decision_id)
    assert record.decision_id == response.decision_id
    assert record.request_id == "core-42"
    assert record.entity_key == "cust-0042"
    assert record.model.name == response.model_name
    assert record.model.version == response.model_version
    assert record.model.artifact_sha256 == response.model_sha256
    assert record.outputs.score == response.score
    assert record.outputs.decision == response.decision
    assert record.outputs.policy_version == response.policy_version
    assert record.route.arm == "primary"
    assert record.trace_id == response.trace_id
    assert record.decided_at == response.decided_at
    assert record.received_at.ToMicroseconds() <= record.decided_at.ToMicroseconds()
    assert record.latency_us == (
        record.decided_at.ToMicroseconds() - record.received_at.ToMicroseconds()
    )
    assert record.inputs.features_sha256 == features_sha256(_snapshot(features))
    assert record.inputs.feature_schema_version == champion.feature_schema_version
    stored = {
        name: getattr(value, value.WhichOneof("kind"))
        for name, value in record.inputs.features.items()
    }
    assert stored == _snapshot(features)


async def test_a_pinned_version_is_served_by_that_version(
    topology: Topology, scoring: scoring_pb2_grpc.ScoringServiceStub
) -> None:
    features = sample_requests("card-fraud", 1, seed=12)[0]
    response = await scoring.Score(
        score_request("core-43", "card-fraud", "cust-0043", features, model_version="2"), timeout=5
    )
    manifest = load_manifests(topology.model_dir)[("card-fraud", "2")]
    assert (response.model_version, response.arm) == ("2", "pinned")
    assert response.model_sha256 == manifest.artifact_sha256


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda f: f.update(amount=math.nan), "amount"),
        (lambda f: f.update(amount=math.inf), "amount"),
        (lambda f: f.pop("merchant_category"), "merchant_category"),
        (lambda f: f.update(loyalty_tier="gold"), "loyalty_tier"),
        (lambda f: f.update(channel="carrier-pigeon"), "channel"),
        (lambda f: f.update(hour_of_day=31.0), "hour_of_day"),
        (lambda f: f.update(card_present="yes"), "card_present"),
    ],
    ids=["nan", "inf", "missing", "unknown", "bad-category", "out-of-range", "mistyped"],
)
async def test_bad_features_get_invalid_argument_naming_the_field(
    scoring: scoring_pb2_grpc.ScoringServiceStub, change: object, field: str
) -> None:
    features = dict(sample_requests("card-fraud", 1, seed=13)[0])
    change(features)  # type: ignore[operator]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await scoring.Score(score_request("core-44", "card-fraud", "c-1", features), timeout=5)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in (info.value.details() or "")


async def test_with_the_runtime_stopped_score_fails_with_a_clear_unavailable(
    model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    topo = Topology(tmp_path_factory.mktemp("no-runtime"), model_dir).start()
    try:
        assert topo.runtime.stop() == 0
        features = sample_requests("credit-risk", 1, seed=14)[0]
        async with grpc.aio.insecure_channel(topo.gateway.address) as channel:
            stub = scoring_pb2_grpc.ScoringServiceStub(channel)
            request = score_request("core-45", "credit-risk", "c-2", features)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.Score(request, timeout=5)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "credit-risk" in (info.value.details() or "")
    finally:
        topo.stop()


async def test_churn_decisions_carry_the_names_its_policy_gives_them(
    scoring: scoring_pb2_grpc.ScoringServiceStub,
    lineage: lineage_pb2_grpc.LineageServiceStub,
) -> None:
    """churn's policy names its bands none / retain-offer (no review band): answers and records
    carry those names, split at the policy's threshold."""
    answers = [
        await scoring.Score(score_request(f"churn-{i}", "churn", f"cust-{i}", row), timeout=10)
        for i, row in enumerate(sample_requests("churn", 60, seed=13))
    ]
    assert {a.decision for a in answers} == {"none", "retain-offer"}
    assert all((a.decision == "retain-offer") == (a.score >= 0.35) for a in answers)
    stored = await get_when_stored(lineage, answers[0].decision_id)
    assert stored.outputs.decision == answers[0].decision
    assert stored.outputs.policy_version == "churn-policy-1"


async def test_trade_anomaly_decisions_pass_or_flag_at_its_policys_threshold(
    topology: Topology,
    scoring: scoring_pb2_grpc.ScoringServiceStub,
    lineage: lineage_pb2_grpc.LineageServiceStub,
) -> None:
    """trade-anomaly's policy names its bands pass / flag: the anomaly score decides at 0.6, a
    flag is recorded as answered, and any reasons it carries are the model's catalogue codes."""
    rows = sample_requests("trade-anomaly", 200, seed=7)
    answers = [
        await scoring.Score(
            score_request(f"trade-{i}", "trade-anomaly", f"desk-{i % 7}", row), timeout=10
        )
        for i, row in enumerate(rows)
    ]
    assert {a.decision for a in answers} == {"pass", "flag"}
    assert all((a.decision == "flag") == (a.score >= 0.6) for a in answers)
    assert all(a.model_name == "trade-anomaly" for a in answers)
    codes = {f"T{k:02d}" for k in range(1, 10)}
    assert all(r.code in codes for a in answers for r in a.reason_codes)
    flagged = next(a for a in answers if a.decision == "flag")
    stored = await get_when_stored(lineage, flagged.decision_id)
    assert stored.outputs.decision == "flag"
    assert stored.outputs.policy_version == "trade-anomaly-policy-1"
    assert stored.model.artifact_sha256 == (
        load_manifests(topology.model_dir)[("trade-anomaly", "1")].artifact_sha256
    )
