"""Records sent through the OpenTelemetry SDK come back whole from the real lineage process."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from lineage_support import (
    MakeRecord,
    db_url_of,
    get_decision,
    raw_database,
    send_with_otel_sdk,
    uuid7,
    wait_for_decision,
)

from lineage.v1 import lineage_pb2
from lineage.v1.record import DecisionRecord
from loadtests.local.topology import ManagedProcess


def micros(ts: object) -> int:
    return ts.seconds * 1_000_000 + ts.nanos // 1000  # type: ignore[attr-defined]


def feature(value: lineage_pb2.FeatureSnapshotValue) -> float | str | bool:
    return getattr(value, value.WhichOneof("kind"))  # type: ignore[no-any-return]


def assert_same(got: lineage_pb2.DecisionRecord, want: DecisionRecord) -> None:
    assert got.decision_id == want.decision_id
    assert got.request_id == want.request_id
    assert got.decision_point == want.decision_point
    assert got.entity_key == want.entity_key
    assert micros(got.received_at) == want.received_at_us
    assert micros(got.decided_at) == want.decided_at_us
    assert got.latency_us == want.decided_at_us - want.received_at_us
    assert (got.model.name, got.model.version, got.model.artifact_sha256) == (
        want.model_name,
        want.model_version,
        want.model_sha256,
    )
    assert got.model.runtime_instance == want.runtime_instance
    assert (got.route.arm, got.route.config_version, got.route.fallback_reason) == (
        want.arm,
        want.config_version,
        want.fallback_reason,
    )
    assert got.route.attempts == want.attempts
    assert {k: feature(v) for k, v in got.inputs.features.items()} == want.features
    for name, value in want.features.items():
        assert type(feature(got.inputs.features[name])) is type(value), name
    assert got.inputs.features_sha256 == want.features_sha256
    assert got.inputs.feature_schema_version == want.feature_schema_version
    assert got.outputs.score == want.score
    assert (got.outputs.decision, got.outputs.policy_version) == (
        want.decision,
        want.policy_version,
    )
    assert [(r.code, r.description, r.rank) for r in got.outputs.reasons] == [
        (r.code, r.description, r.rank) for r in want.reasons
    ]
    assert got.outputs.reason_catalogue_version == want.reason_catalogue_version
    assert (got.trace_id, got.span_id, got.gateway_instance) == (
        want.trace_id,
        want.span_id,
        want.gateway_instance,
    )


def stored_rows(lineage: ManagedProcess, decision_id: str) -> int:
    with raw_database(db_url_of(lineage)) as db:
        [(n,)] = db.execute("SELECT COUNT(*) FROM decisions WHERE decision_id = ?", (decision_id,))
    return int(n)


def test_record_round_trips_through_otel_sdk(
    lineage: ManagedProcess, make_record: MakeRecord
) -> None:
    records = [
        make_record(),
        make_record(
            decision_point="credit-risk",
            model_name="credit-risk",
            model_version="1",
            arm="fallback",
            fallback_reason="runtime timeout",
            attempts=3,
            score=0.1,
            decision="approve",
            reasons=(),
            reason_catalogue_version="",
        ),
    ]
    send_with_otel_sdk(lineage.address, records, other_spans=3)
    for record in records:
        got = wait_for_decision(lineage.address, record.decision_id)
        assert_same(got, record)
        assert micros(got.stored_at) >= 0
        assert got.stored_at.seconds > 1_700_000_000


def test_same_record_twice_is_stored_once(lineage: ManagedProcess, make_record: MakeRecord) -> None:
    record = make_record()
    send_with_otel_sdk(lineage.address, [record])
    first = wait_for_decision(lineage.address, record.decision_id)
    send_with_otel_sdk(lineage.address, [record, record])
    again = get_decision(lineage.address, record.decision_id)
    assert again == first  # stored_at included: the first write stands
    assert stored_rows(lineage, record.decision_id) == 1


def test_unknown_decision_is_not_found(lineage: ManagedProcess) -> None:
    missing = uuid7()
    with pytest.raises(grpc.RpcError) as info:
        get_decision(lineage.address, missing)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert missing in info.value.details()


@pytest.mark.parametrize("bad_id", ["", "   ", "not-a-uuid", "0190b3a2c7d47f3e8a1b2c3d4e5f6a7b"])
def test_malformed_decision_id_is_invalid_argument(lineage: ManagedProcess, bad_id: str) -> None:
    with pytest.raises(grpc.RpcError) as info:
        get_decision(lineage.address, bad_id)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "decision_id" in info.value.details()


def test_upper_case_id_finds_the_record(lineage: ManagedProcess, make_record: MakeRecord) -> None:
    record = make_record()
    send_with_otel_sdk(lineage.address, [record])
    wait_for_decision(lineage.address, record.decision_id)
    assert get_decision(lineage.address, record.decision_id.upper()).decision_id == (
        record.decision_id
    )


@pytest.mark.parametrize(
    "service",
    ["", "opentelemetry.proto.collector.trace.v1.TraceService", "lineage.v1.LineageService"],
)
def test_health_is_serving(lineage: ManagedProcess, service: str) -> None:
    with grpc.insecure_channel(lineage.address) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=5
        )
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
