"""Building decision records: what the rows of one runtime answer share, and what each row adds.

Every decision, whether a Score call's, a ScoreBatch row's, a fallback's or a shadow's, is built
here, so the record's fields are filled in one place.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.attempts.answers import Answer
from gateway.caller import OPEN_ACCESS, Caller
from gateway.routing.thresholds import ReasonPolicy, ThresholdPolicy
from lineage.v1.record import (
    IDENTITY_VERIFIED_BY,
    REASONS_WANTED,
    SCORING_ENVIRONMENT,
    DecisionRecord,
    FeatureScalar,
    ReasonEntry,
    features_sha256,
)

BATCH_SIZE = "batch_size"
"""Key in a record's ``extra``: rows in the runtime call that scored it."""
ENDPOINT = "endpoint"
"""Key in a record's ``extra``: the runtime endpoint that answered."""


_NO_REASONS = ReasonPolicy(0)


@dataclass(slots=True)
class Decided:
    """What the decisions of one group (rows answered together) have in common."""

    decision_point: str
    policy: ThresholdPolicy
    arm: str
    feature_schema_version: str
    config_version: str
    received_ns: int
    attempts: int
    fallback_reason: str = ""
    extra: dict[str, str] | None = None
    reasons: ReasonPolicy = _NO_REASONS
    caller: Caller = OPEN_ACCESS


@dataclass(slots=True)
class RowOutcome:
    """One row's part: who asked, what was scored, what answered, and its decision id."""

    request_id: str
    entity_key: str
    features: dict[str, FeatureScalar]
    answer: Answer
    decision_id: str


def build_record(
    decided: Decided,
    row: RowOutcome,
    decided_ns: int,
    trace_id: str,
    span_id: str,
    gateway_instance: str,
) -> DecisionRecord:
    answer = row.answer
    extra = dict(decided.extra) if decided.extra else {}
    if answer.endpoint:
        extra[ENDPOINT] = answer.endpoint
        extra[BATCH_SIZE] = str(answer.batch_size)
        if answer.scoring_environment:
            extra[SCORING_ENVIRONMENT] = answer.scoring_environment
    extra[IDENTITY_VERIFIED_BY] = answer.identity_verified_by
    policy = decided.policy
    decision = policy.decide(answer.score)
    rules = answer.reasons
    reasons: tuple[ReasonEntry, ...] = ()
    catalogue_version = ""
    contributions: dict[str, float] = {}
    if rules is not None:
        reasons, catalogue_version = rules.reasons, answer.model_version
    elif answer.contributions is not None and answer.ranker is not None:
        ranker = answer.ranker
        contributions = dict(zip(ranker.feature_names, answer.contributions, strict=True))
        wanted = decided.reasons.wanted(policy, decision)
        extra[REASONS_WANTED] = str(wanted)
        if wanted:
            reasons = tuple(
                ReasonEntry(
                    code=r.code,
                    contribution=r.contribution,
                    description=r.statement,
                    feature=r.feature,
                    rank=r.rank,
                )
                for r in ranker.rank(answer.contributions, row.features, wanted)
            )
            if reasons:
                catalogue_version = ranker.catalogue_version
    return DecisionRecord(
        decision_id=row.decision_id,
        request_id=row.request_id,
        decision_point=decided.decision_point,
        entity_key=row.entity_key,
        received_at_us=decided.received_ns // 1000,
        decided_at_us=decided_ns // 1000,
        model_name=answer.model_name,
        model_version=answer.model_version,
        model_sha256=answer.model_sha256,
        runtime_instance=answer.runtime_instance,
        arm=decided.arm,
        config_version=decided.config_version,
        fallback_reason=decided.fallback_reason,
        attempts=decided.attempts,
        features=row.features,
        features_sha256=features_sha256(row.features),
        feature_schema_version=decided.feature_schema_version,
        score=answer.score,
        decision=decision,
        policy_version=policy.version,
        trace_id=trace_id,
        span_id=span_id,
        gateway_instance=gateway_instance,
        reasons=reasons,
        reason_catalogue_version=catalogue_version,
        contributions=contributions,
        contributions_base=answer.contributions_base if contributions else 0.0,
        extra=extra,
        principal=decided.caller.principal,
        principal_verified_by=decided.caller.verified_by,
        access_policy_version=decided.caller.access_policy_version,
    )
