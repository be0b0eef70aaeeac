"""Stored decisions to ``lineage.v1`` messages; the only module that builds them."""

from __future__ import annotations

from google.protobuf.timestamp_pb2 import Timestamp

from governance.record import FeatureScalar
from governance.store import StoredDecision
from lineage.v1 import lineage_pb2


def timestamp_from_us(us: int) -> Timestamp:
    """Exact: floor division keeps nanos non-negative for times before the epoch too."""
    seconds, micros = divmod(us, 1_000_000)
    return Timestamp(seconds=seconds, nanos=micros * 1000)


def timestamp_to_us(ts: Timestamp) -> int:
    return ts.seconds * 1_000_000 + ts.nanos // 1000


def feature_value(value: FeatureScalar) -> lineage_pb2.FeatureSnapshotValue:
    # bool first: it is an int subclass, and True must not become 1.0.
    if isinstance(value, bool):
        return lineage_pb2.FeatureSnapshotValue(bool_value=value)
    if isinstance(value, str):
        return lineage_pb2.FeatureSnapshotValue(string_value=value)
    return lineage_pb2.FeatureSnapshotValue(number_value=float(value))


def decision_to_proto(stored: StoredDecision) -> lineage_pb2.DecisionRecord:
    r = stored.record
    return lineage_pb2.DecisionRecord(
        decision_id=r.decision_id,
        request_id=r.request_id,
        decision_point=r.decision_point,
        entity_key=r.entity_key,
        received_at=timestamp_from_us(r.received_at_us),
        decided_at=timestamp_from_us(r.decided_at_us),
        latency_us=r.latency_us,
        model=lineage_pb2.ModelRef(
            name=r.model_name,
            version=r.model_version,
            artifact_sha256=r.model_sha256,
            runtime_instance=r.runtime_instance,
        ),
        route=lineage_pb2.RouteRef(
            arm=r.arm,
            config_version=r.config_version,
            fallback_reason=r.fallback_reason,
            attempts=r.attempts,
        ),
        inputs=lineage_pb2.Inputs(
            features={name: feature_value(v) for name, v in r.features.items()},
            features_sha256=r.features_sha256,
            feature_schema_version=r.feature_schema_version,
        ),
        outputs=lineage_pb2.Outputs(
            score=r.score,
            decision=r.decision,
            policy_version=r.policy_version,
            reasons=[
                lineage_pb2.Reason(code=x.code, description=x.description, rank=x.rank)
                for x in r.reasons
            ],
            reason_catalogue_version=r.reason_catalogue_version,
        ),
        trace_id=r.trace_id,
        span_id=r.span_id,
        gateway_instance=r.gateway_instance,
        stored_at=timestamp_from_us(stored.stored_at_us),
    )
