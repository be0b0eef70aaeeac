"""The decision record: what the gateway emits for each decision and the lineage store keeps.

The gateway puts the record on its decision span as one JSON attribute (``RECORD_ATTRIBUTE``); the
lineage store's OTLP receiver takes it back out with ``record_from_json``, which validates it. Times
are UTC microseconds since the epoch so that a record round-trips exactly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import orjson
from pydantic import TypeAdapter

SPAN_NAME = "scoregate.decision"
RECORD_ATTRIBUTE = "scoregate.decision.record"
DECISION_ID_ATTRIBUTE = "scoregate.decision.id"

FeatureScalar = float | str | bool


@dataclass(frozen=True, slots=True)
class ReasonEntry:
    code: str
    description: str
    rank: int


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """One decision, as a bank must be able to show it (see BRIEF: the decision record)."""

    decision_id: str
    request_id: str
    decision_point: str
    entity_key: str
    received_at_us: int
    decided_at_us: int
    model_name: str
    model_version: str
    model_sha256: str
    runtime_instance: str
    arm: str
    config_version: str
    fallback_reason: str
    attempts: int
    features: dict[str, FeatureScalar]
    features_sha256: str
    feature_schema_version: str
    score: float
    decision: str
    policy_version: str
    trace_id: str
    span_id: str
    gateway_instance: str
    reasons: tuple[ReasonEntry, ...] = ()
    reason_catalogue_version: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def latency_us(self) -> int:
        return self.decided_at_us - self.received_at_us


_ADAPTER = TypeAdapter(DecisionRecord)


def record_to_json(record: DecisionRecord) -> str:
    return orjson.dumps(asdict(record)).decode()


def record_from_json(data: str | bytes) -> DecisionRecord:
    """Parses and validates a record; raises pydantic.ValidationError when it is malformed."""
    return _ADAPTER.validate_json(data, strict=False)


def features_sha256(features: dict[str, FeatureScalar]) -> str:
    """sha256 of the canonical JSON of a feature snapshot (sorted keys, no spaces)."""
    import hashlib

    return hashlib.sha256(orjson.dumps(features, option=orjson.OPT_SORT_KEYS)).hexdigest()


def canonical_record_json(record: DecisionRecord) -> bytes:
    """The record's canonical JSON (sorted keys at every level): what the store keeps and hashes."""
    return orjson.dumps(asdict(record), option=orjson.OPT_SORT_KEYS)
