"""Stored decisions to ``lineage.v1`` messages; the only module that builds them."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
from google.protobuf.timestamp_pb2 import Timestamp

from governance.chain import Checkpoint
from governance.monitoring.arms import ArmComparison, ArmWindow
from governance.monitoring.drift import MeasureDrift
from governance.monitoring.performance import VersionPerformance
from governance.monitoring.queries import ArmDrift, DriftWindow
from governance.queries import ModelHistory, ServingAt
from governance.store import StoredDecision
from governance.store.base import TrafficSeen
from governance.store.entries import (
    AccessEntry,
    AccessFilter,
    AccessPage,
    ArmTarget,
    Count,
    DecisionFilter,
    DecisionPage,
    DecisionSummary,
    Outcome,
    Override,
    RegisteredManifest,
    RouteChange,
)
from lineage.v1 import lineage_pb2
from lineage.v1.record import (
    FALLBACK_ERROR,
    FALLBACK_FROM,
    IDENTITY_VERIFIED_BY,
    PARENT_DECISION_ID,
    REASONS_WANTED,
    SCORING_ENVIRONMENT,
    FeatureScalar,
    canonical_record_json,
)

END_OF_TIME_US = 2**62


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
            scoring_environment=r.extra.get(SCORING_ENVIRONMENT, ""),
            identity_verified_by=r.extra.get(IDENTITY_VERIFIED_BY, ""),
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
                lineage_pb2.Reason(
                    code=x.code,
                    description=x.description,
                    rank=x.rank,
                    feature=x.feature,
                    contribution=x.contribution,
                )
                for x in r.reasons
            ],
            reason_catalogue_version=r.reason_catalogue_version,
            contributions=r.contributions,
            contributions_base=r.contributions_base,
            reasons_wanted=_reasons_wanted(r.extra.get(REASONS_WANTED, "")),
        ),
        trace_id=r.trace_id,
        span_id=r.span_id,
        gateway_instance=r.gateway_instance,
        stored_at=timestamp_from_us(stored.stored_at_us),
        seq=stored.seq,
        chain_sha256=stored.chain_sha256,
        # The stored hash: a record stored before a field existed keeps the JSON of its time.
        record_sha256=stored.record_sha256 or hashlib.sha256(canonical_record_json(r)).hexdigest(),
        overrides=[override_to_proto(o) for o in stored.overrides],
        outcomes=[outcome_to_proto(o) for o in stored.outcomes],
        parent_decision_id=r.extra.get(PARENT_DECISION_ID, ""),
        fallback_from=r.extra.get(FALLBACK_FROM, ""),
        fallback_error=r.extra.get(FALLBACK_ERROR, ""),
        principal=r.principal,
        principal_verified_by=r.principal_verified_by,
        access_policy_version=r.access_policy_version,
    )


def _reasons_wanted(text: str) -> int:
    # The gateway writes "0".."4"; anything else (an older record has none) reads as 0.
    return int(text) if text.isdigit() and len(text) == 1 else 0


def _us_or(ts: Timestamp, has: bool, default: int) -> int:
    return timestamp_to_us(ts) if has else default


def override_to_proto(o: Override) -> lineage_pb2.Override:
    return lineage_pb2.Override(
        override_id=o.override_id,
        decision_id=o.decision_id,
        reviewer=o.reviewer,
        at=timestamp_from_us(o.at_us),
        new_decision=o.new_decision,
        reason=o.reason,
        recorded_at=timestamp_from_us(o.recorded_at_us),
        seq=o.seq,
    )


def override_from_proto(o: lineage_pb2.Override) -> Override:
    return Override(
        o.override_id,
        o.decision_id,
        o.reviewer,
        _us_or(o.at, o.HasField("at"), 0),
        o.new_decision,
        o.reason,
    )


def outcome_to_proto(o: Outcome) -> lineage_pb2.Outcome:
    return lineage_pb2.Outcome(
        outcome_id=o.outcome_id,
        decision_id=o.decision_id,
        label=o.label,
        at=timestamp_from_us(o.at_us),
        source=o.source,
        recorded_at=timestamp_from_us(o.recorded_at_us),
        seq=o.seq,
    )


def outcome_from_proto(o: lineage_pb2.Outcome) -> Outcome:
    return Outcome(
        o.outcome_id, o.decision_id, o.label, _us_or(o.at, o.HasField("at"), 0), o.source
    )


def filter_from_proto(r: lineage_pb2.ListDecisionsRequest, now_us: int) -> DecisionFilter:
    return DecisionFilter(
        since_us=_us_or(r.since, r.HasField("since"), 0),
        until_us=_us_or(r.until, r.HasField("until"), now_us + 1),
        entity_key=r.entity_key,
        model_name=r.model_name,
        model_version=r.model_version,
        decision_point=r.decision_point,
        decision=r.decision,
        reason_code=r.reason_code,
        reason_any_rank=r.reason_any_rank,
    )


def summary_to_proto(d: DecisionSummary) -> lineage_pb2.DecisionSummary:
    return lineage_pb2.DecisionSummary(
        decision_id=d.decision_id,
        decided_at=timestamp_from_us(d.decided_at_us),
        decision_point=d.decision_point,
        entity_key=d.entity_key,
        model_name=d.model_name,
        model_version=d.model_version,
        arm=d.arm,
        score=d.score,
        decision=d.decision,
    )


def count_to_proto(c: Count) -> lineage_pb2.DecisionCount:
    return lineage_pb2.DecisionCount(
        model_name=c.model_name,
        model_version=c.model_version,
        arm=c.arm,
        decision=c.decision,
        count=c.count,
    )


def page_to_proto(page: DecisionPage) -> lineage_pb2.ListDecisionsResponse:
    return lineage_pb2.ListDecisionsResponse(
        decisions=[summary_to_proto(d) for d in page.decisions],
        counts=[count_to_proto(c) for c in page.counts],
        next_page_token=page.next_page_token,
    )


def target_to_proto(t: ArmTarget) -> lineage_pb2.ArmTarget:
    return lineage_pb2.ArmTarget(
        decision_point=t.decision_point,
        arm=t.arm,
        model_name=t.model_name,
        model_version=t.model_version,
        weight=t.weight,
    )


def route_change_to_proto(c: RouteChange) -> lineage_pb2.RouteChange:
    return lineage_pb2.RouteChange(
        change_id=c.change_id,
        changed_at=timestamp_from_us(c.changed_at_us),
        config_version=c.config_version,
        diff_json=orjson.dumps(c.diff, option=orjson.OPT_SORT_KEYS).decode(),
        targets=[target_to_proto(t) for t in c.targets],
        source=c.source,
        recorded_at=timestamp_from_us(c.recorded_at_us),
        seq=c.seq,
        initiated_by=c.initiated_by,
        analysis_json=(
            orjson.dumps(c.analysis, option=orjson.OPT_SORT_KEYS).decode() if c.analysis else ""
        ),
        unapproved=list(c.unapproved),
    )


def _json_object(text: str, name: str) -> dict[str, Any]:
    try:
        value = orjson.loads(text) if text else {}
    except orjson.JSONDecodeError as e:
        raise ValueError(f"{name} is not a JSON object: {e}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{name} is not a JSON object")
    return value


def route_change_from_proto(c: lineage_pb2.RouteChange) -> RouteChange:
    """Raises ValueError naming the field when diff_json or analysis_json is not a JSON
    object."""
    diff = _json_object(c.diff_json, "change.diff_json")
    analysis = _json_object(c.analysis_json, "change.analysis_json")
    return RouteChange(
        changed_at_us=_us_or(c.changed_at, c.HasField("changed_at"), 0),
        config_version=c.config_version,
        diff=diff,
        targets=tuple(
            ArmTarget(t.decision_point, t.arm, t.model_name, t.model_version, t.weight)
            for t in c.targets
        ),
        source=c.source,
        initiated_by=c.initiated_by,
        analysis=analysis,
        unapproved=tuple(c.unapproved),
    )


def serving_to_proto(s: ServingAt) -> lineage_pb2.GetServingAtResponse:
    reply = lineage_pb2.GetServingAtResponse(
        targets=[target_to_proto(t) for t in s.targets],
        counts=[count_to_proto(c) for c in s.page.counts],
        decisions=[summary_to_proto(d) for d in s.page.decisions],
        window_start=timestamp_from_us(s.window_start_us),
        window_end=timestamp_from_us(s.window_end_us),
    )
    if s.in_force is not None:
        reply.in_force.CopyFrom(route_change_to_proto(s.in_force))
    return reply


def _observed(t: TrafficSeen) -> lineage_pb2.ObservedTraffic:
    return lineage_pb2.ObservedTraffic(
        decision_point=t.decision_point,
        model_version=t.model_version,
        arm=t.arm,
        first_decision_at=timestamp_from_us(t.first_us),
        last_decision_at=timestamp_from_us(t.last_us),
        decisions=t.count,
    )


def history_to_proto(h: ModelHistory) -> lineage_pb2.GetModelHistoryResponse:
    reply = lineage_pb2.GetModelHistoryResponse(observed=[_observed(t) for t in h.observed])
    for p in h.routed:
        period = reply.routed.add(
            decision_point=p.decision_point,
            model_version=p.model_version,
            arm=p.arm,
            started_at=timestamp_from_us(p.started_us),
            weight=p.weight,
            started_by=p.started_by,
            stopped_by=p.stopped_by,
        )
        if p.stopped_us is not None:
            period.stopped_at.CopyFrom(timestamp_from_us(p.stopped_us))
    return reply


def manifest_to_proto(m: RegisteredManifest) -> lineage_pb2.ModelManifest:
    return lineage_pb2.ModelManifest(
        artifact_sha256=m.artifact_sha256,
        name=m.name,
        version=m.version,
        manifest_json=m.manifest_json,
        registered_at=timestamp_from_us(m.registered_at_us),
    )


def checkpoint_to_proto(c: Checkpoint) -> lineage_pb2.Checkpoint:
    return lineage_pb2.Checkpoint(
        size=c.size, head_sha256=c.head_sha256, at=timestamp_from_us(c.at_us)
    )


def access_filter_from_proto(r: lineage_pb2.ListAccessLogRequest, now_us: int) -> AccessFilter:
    return AccessFilter(
        since_us=_us_or(r.since, r.HasField("since"), 0),
        until_us=_us_or(r.until, r.HasField("until"), now_us + 1),
        principal=r.principal,
        method=r.method,
        decision_id=r.decision_id,
    )


def access_entry_to_proto(e: AccessEntry) -> lineage_pb2.AccessLogEntry:
    return lineage_pb2.AccessLogEntry(
        access_id=e.access_id,
        at=timestamp_from_us(e.at_us),
        principal=e.principal,
        verified_by=e.verified_by,
        peer=e.peer,
        method=e.method,
        permission=e.permission,
        policy_version=e.policy_version,
        decision_ids=list(e.decision_ids),
        query_json=orjson.dumps(e.query, option=orjson.OPT_SORT_KEYS).decode(),
        outcome=e.outcome,
        detail=e.detail,
        recorded_at=timestamp_from_us(e.recorded_at_us),
        seq=e.seq,
    )


def access_page_to_proto(page: AccessPage) -> lineage_pb2.ListAccessLogResponse:
    return lineage_pb2.ListAccessLogResponse(
        entries=[access_entry_to_proto(e) for e in page.entries],
        next_page_token=page.next_page_token,
    )


def _measure_to_proto(m: MeasureDrift) -> lineage_pb2.MeasureDrift:
    return lineage_pb2.MeasureDrift(
        measure=m.measure,
        kind=m.kind,
        decisions=m.decisions,
        psi=m.psi,
        band=m.band,
        missing_share=m.missing_share,
        baseline_missing_share=m.baseline_missing_share,
        out_of_range_share=m.out_of_range_share,
        unknown_share=m.unknown_share,
        chi_square_p=m.chi_square_p,
        jensen_shannon=m.jensen_shannon,
        slots=m.slots,
        shares=m.shares,
        baseline_shares=m.baseline_shares,
    )


def arm_drift_to_proto(a: ArmDrift) -> lineage_pb2.ArmDrift:
    out = lineage_pb2.ArmDrift(
        model_name=a.model_name,
        model_version=a.model_version,
        arm=a.arm,
        score_psi_vs_primary=a.score_psi_vs_primary,
        baselines_known=a.report is not None,
        shadow_pairs=[
            lineage_pb2.ShadowPairs(
                parent_model=p.parent_model,
                parent_version=p.parent_version,
                pairs=p.pairs,
                disagreements=p.disagreements,
                disagreement_rate=p.disagreement_rate,
            )
            for p in a.shadow_pairs
        ],
    )
    if a.report is not None:
        out.decisions = a.report.decisions
        out.decision_mix.update(a.report.decision_mix)
        if a.report.score is not None:
            out.score.CopyFrom(_measure_to_proto(a.report.score))
        out.features.extend(_measure_to_proto(m) for m in a.report.features)
    return out


def drift_to_proto(windows: list[DriftWindow]) -> lineage_pb2.GetDriftResponse:
    return lineage_pb2.GetDriftResponse(
        windows=[
            lineage_pb2.DriftWindow(
                start=timestamp_from_us(w.start_us),
                end=timestamp_from_us(w.end_us),
                arms=[arm_drift_to_proto(a) for a in w.arms],
            )
            for w in windows
        ]
    )


def performance_to_proto(found: list[VersionPerformance]) -> lineage_pb2.GetPerformanceResponse:
    return lineage_pb2.GetPerformanceResponse(
        versions=[
            lineage_pb2.VersionPerformance(
                model_name=v.model_name,
                model_version=v.model_version,
                arm=v.arm,
                labelled=v.labelled,
                bad=v.bad,
                auc=v.auc,
                ks=v.ks,
                bands=[
                    lineage_pb2.ScoreBand(
                        low=b.low, high=b.high, labelled=b.labelled, bad_rate=b.bad_rate
                    )
                    for b in v.bands
                ],
                enough_labels=v.enough,
            )
            for v in found
        ]
    )


def _arm_window_to_proto(a: ArmWindow) -> lineage_pb2.ArmWindow:
    return lineage_pb2.ArmWindow(
        arm=a.arm,
        decisions=a.decisions,
        fallbacks=a.fallbacks,
        errors=a.errors,
        latency_p99_ms=a.latency_p99_ms,
        score_bins=a.score_bins,
        decision_counts=dict(a.decision_counts),
        model_versions=sorted(a.model_versions),
    )


def arms_to_proto(
    c: ArmComparison, since_us: int, until_us: int
) -> lineage_pb2.CompareArmsResponse:
    return lineage_pb2.CompareArmsResponse(
        primary=_arm_window_to_proto(c.primary),
        canary=_arm_window_to_proto(c.canary),
        score_psi=c.score_psi,
        decision_mix_shift=c.decision_mix_shift,
        since=timestamp_from_us(since_us),
        until=timestamp_from_us(until_us),
    )
