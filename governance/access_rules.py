"""What each method of the store's API needs, and what its access-log entry says it touched.

One row per method: the permissions a call needs (``needs``, from the request: a listing by
entity key also needs ``read_features``, since it asks about a person), the decision ids it names
and its query as kept in the access log. The query never holds an entity key (its sha256 instead, or
its pseudonym where the store pseudonymises)
nor a manifest's text: the access log is read by auditors, who need not hold ``read_features``.
Health and reflection are neither checked nor logged; a method of the two guarded services
that is missing from the table is refused (``governance.access``), so a method added to the
API is closed until its row says who may call it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from governance.pseudonyms import EntityPseudonyms
from lineage.v1 import lineage_pb2
from security.policy_schema import LineagePermission as P

LINEAGE = lineage_pb2.DESCRIPTOR.services_by_name["LineageService"].full_name
TRACE = trace_service_pb2.DESCRIPTOR.services_by_name["TraceService"].full_name
GUARDED_SERVICES = (f"/{LINEAGE}/", f"/{TRACE}/")


@dataclass(frozen=True, slots=True)
class MethodRule:
    name: str
    permission: P
    decision_ids: Callable[[Any], tuple[str, ...]] = lambda _: ()
    hidden: tuple[str, ...] = ()
    """Request fields left out of the logged query."""
    extra: Callable[[Any], tuple[P, ...]] = lambda _: ()
    audit_refusals_only: bool = False
    """Decision records are themselves chained: only refused Exports are logged."""

    def needs(self, request: Any) -> tuple[P, ...]:
        return (self.permission, *self.extra(request))

    def query(self, request: Any, pseudonyms: EntityPseudonyms | None = None) -> dict[str, Any]:
        if self.audit_refusals_only:
            return {}
        query: dict[str, Any] = json_format.MessageToDict(request, preserving_proto_field_name=True)
        for name in self.hidden:
            query.pop(name, None)
        key = query.pop("entity_key", "")
        if key and pseudonyms is not None and pseudonyms.enabled:
            # The store's own pseudonym: an auditor can match the entry to the records, and
            # no one can test a guessed card number against it without the key.
            query["entity_key_pseudonym"] = pseudonyms.presented(key)
        elif key:
            query["entity_key_sha256"] = hashlib.sha256(key.encode()).hexdigest()
        return query


def _one(request: Any) -> tuple[str, ...]:
    return (request.decision_id,) if request.decision_id else ()


def _by_entity(request: Any) -> tuple[P, ...]:
    return (P.READ_FEATURES,) if request.entity_key else ()


_RULES = (
    MethodRule("GetDecision", P.READ_DECISIONS, _one, hidden=("decision_id",)),
    MethodRule("ListDecisions", P.READ_DECISIONS, extra=_by_entity),
    MethodRule("ListShadows", P.READ_DECISIONS, _one, hidden=("decision_id",)),
    MethodRule("GetServingAt", P.READ_DECISIONS),
    MethodRule("ListRouteChanges", P.READ_DECISIONS),
    MethodRule("GetModelHistory", P.READ_DECISIONS),
    MethodRule("GetModel", P.READ_DECISIONS),
    MethodRule("RecordRouteChange", P.RECORD_ROUTE_CHANGES, hidden=("change",)),
    MethodRule("RegisterManifest", P.REGISTER_MODELS, hidden=("manifest_json",)),
    MethodRule(
        "RecordOverride",
        P.RECORD_OVERRIDES,
        lambda r: (r.override.decision_id,),
        hidden=("override",),
    ),
    MethodRule(
        "RecordOutcome",
        P.RECORD_OUTCOMES,
        lambda r: (r.outcome.decision_id,),
        hidden=("outcome",),
    ),
    MethodRule("RecordApproval", P.APPROVE_MODELS),
    MethodRule("RevokeApproval", P.APPROVE_MODELS),
    MethodRule("GetApprovals", P.READ_APPROVALS),
    MethodRule("GetCheckpoint", P.CHECKPOINTS),
    MethodRule("ListAccessLog", P.READ_ACCESS_LOG),
    # Aggregates only: counts per bin, no decision, entity key or feature value.
    MethodRule("GetDrift", P.READ_DECISIONS),
    MethodRule("GetPerformance", P.READ_DECISIONS),
    MethodRule("CompareArms", P.READ_DECISIONS),
)

RULES: dict[str, MethodRule] = {
    **{f"/{LINEAGE}/{r.name}": r for r in _RULES},
    f"/{TRACE}/Export": MethodRule("Export", P.INGEST, audit_refusals_only=True),
}
