"""The decision record: what the gateway emits for each decision and the lineage store keeps.

A contract between the two, so it lives here and imports neither. The gateway puts the record on
its decision span as one JSON attribute (``lineage.v1.spans``); the lineage store's OTLP receiver
takes it back out with ``record_from_json``, which validates it. Times are UTC microseconds since
the epoch so that a record round-trips exactly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

import orjson
from pydantic import TypeAdapter

FeatureScalar = float | str | bool

# Keys of ``DecisionRecord.extra`` that the lineage store reads: it returns them as fields of
# lineage.v1.DecisionRecord, and indexes PARENT_DECISION_ID to list the shadows of a decision
# (``ListShadows``). The gateway writes them (gateway.recording.records).
PARENT_DECISION_ID = "parent_decision_id"
"""A shadow decision's: the id of the decision the caller got, whose request it mirrored."""
FALLBACK_FROM = "fallback_from"
"""A fallback decision's: the model version that failed to answer (its served name)."""
FALLBACK_ERROR = "fallback_error"
"""A fallback decision's: that version's error as the gateway saw it."""
IDENTITY_VERIFIED_BY = "identity_verified_by"
"""How the gateway knew which artifact answered: one of the VERIFIED_BY_ values below."""

# The values of IDENTITY_VERIFIED_BY, and the routes file's `identity` of an endpoint.
VERIFIED_BY_RESPONSE_PARAMETER = "response_parameter"
"""The runtime's answer carried the artifact sha256, equal to the manifest's."""
VERIFIED_BY_METADATA = "metadata"
"""The server's model metadata named the manifest's artifact sha256 when last (re)connected."""
VERIFIED_BY_DECLARED = "declared"
"""Not verified: the routes file declares what the endpoint serves, and it was trusted."""
VERIFIED_BY_RULES_FILE = "rules_file"
"""A rules scorer answered: the gateway hashed the rules file it loaded itself."""
SCORING_ENVIRONMENT = "scoring_environment"
"""A model decision's: the runtime's scoring environment (onnxruntime version and settings)."""
REASONS_WANTED = "reasons_wanted"
"""A decision with contributions: the most reasons its decision point gave this decision (0 to
4; 0 for an approval when approvals carry none), so that replay ranks them again alike."""


# Both classes declare their fields in sorted order, so that orjson, which writes a dataclass's
# fields in declaration order, writes the canonical JSON (sorted keys at every level) itself, in C:
# ``canonical_json`` is then one native pass instead of a walk through dicts. The field
# order is checked at import below and the bytes against ``canonical_record_json`` in the tests.
@dataclass(frozen=True, slots=True, kw_only=True)
class ReasonEntry:
    """One ranked reason: 1 is the principal one. A model's reason names the feature and its
    contribution (to the log-odds of the adverse outcome); a rules file's has neither."""

    code: str
    contribution: float = 0.0
    description: str
    feature: str = ""
    rank: int


@dataclass(frozen=True, slots=True, kw_only=True)
class DecisionRecord:
    """One decision, as a bank must be able to show it (see BRIEF: the decision record).

    Fields are keyword-only and in alphabetical order (see above); by meaning: ids
    (decision_id, request_id, trace_id, span_id), what was asked (decision_point, entity_key,
    features, features_sha256, feature_schema_version), when (received_at_us, decided_at_us),
    who answered (model_name, model_version, model_sha256, runtime_instance, gateway_instance,
    arm, config_version, fallback_reason, attempts), what (score, decision, policy_version,
    reasons, reason_catalogue_version, contributions, contributions_base, extra) and who asked
    (principal, principal_verified_by, access_policy_version). ``extra`` keys the store reads are
    named above.
    """

    access_policy_version: str = ""
    """The gateway's access policy version that allowed the call (docs/security.md); empty
    when the gateway ran with open access, or for records made before it had one."""
    arm: str
    attempts: int
    config_version: str
    contributions: dict[str, float] = field(default_factory=dict)
    """Each feature's contribution to the model's raw score (log-odds), as the runtime computed
    it from the served artifact (FP32 values); empty when none was asked for."""
    contributions_base: float = 0.0
    """The model's base value: ``contributions`` plus this is the row's raw margin."""
    decided_at_us: int
    decision: str
    decision_id: str
    decision_point: str
    entity_key: str
    extra: dict[str, str] = field(default_factory=dict)
    fallback_reason: str
    feature_schema_version: str
    features: dict[str, FeatureScalar]
    features_sha256: str
    gateway_instance: str
    model_name: str
    model_sha256: str
    model_version: str
    policy_version: str
    principal: str = ""
    """Who asked: the caller's identity as the gateway verified it (a SPIFFE ID, a certificate
    subject field, a bearer token's subject); empty with open access."""
    principal_verified_by: str = ""
    """How the gateway verified ``principal``: ``mtls``, ``jwt`` or ``none`` (open access)."""
    reason_catalogue_version: str = ""
    reasons: tuple[ReasonEntry, ...] = ()
    received_at_us: int
    request_id: str
    runtime_instance: str
    score: float
    span_id: str
    trace_id: str

    @property
    def latency_us(self) -> int:
        return self.decided_at_us - self.received_at_us


for _cls in (ReasonEntry, DecisionRecord):
    _names = [f.name for f in fields(_cls)]
    if _names != sorted(_names):
        raise AssertionError(f"{_cls.__name__}'s fields must stay in sorted order: {_names}")


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
    """The record's canonical JSON (sorted keys at every level): what the store keeps and hashes.

    The reference definition (through plain dicts); ``canonical_json`` gives the same bytes."""
    return orjson.dumps(asdict(record), option=orjson.OPT_SORT_KEYS)


def canonical_json(record: DecisionRecord) -> bytes:
    """``canonical_record_json``'s exact bytes in one native orjson pass (fields are declared in
    sorted order; nested dicts are sorted by ``OPT_SORT_KEYS``)."""
    return orjson.dumps(record, option=orjson.OPT_SORT_KEYS)
