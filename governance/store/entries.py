"""What the store keeps besides decision records, and what its queries answer, as plain values.

Each appended fact has a canonical JSON ``body`` (sorted keys): its sha256 is the entry hash in
the chain (``governance.chain``), and the columns the queries use are derived from it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import orjson


def canonical(data: dict[str, Any]) -> bytes:
    return orjson.dumps(data, option=orjson.OPT_SORT_KEYS)


@dataclass(frozen=True, slots=True)
class Override:
    """A reviewer replaced a decision's outcome: who, when, the new decision and why."""

    override_id: str
    decision_id: str
    reviewer: str
    at_us: int
    new_decision: str
    reason: str
    recorded_at_us: int = 0
    seq: int = 0

    def body(self) -> dict[str, Any]:
        d = asdict(self)
        del d["recorded_at_us"], d["seq"]
        return {"kind": "override", **d}


@dataclass(frozen=True, slots=True)
class Outcome:
    """What later turned out to be true for a decision (confirmed fraud, default, ...)."""

    outcome_id: str
    decision_id: str
    label: str
    at_us: int
    source: str
    recorded_at_us: int = 0
    seq: int = 0

    def body(self) -> dict[str, Any]:
        d = asdict(self)
        del d["recorded_at_us"], d["seq"]
        return {"kind": "outcome", **d}


@dataclass(frozen=True, slots=True)
class Approval:
    """A principal approved a model version (``action`` "approve"), or revoked every approval
    of it recorded so far ("revoke"): who, in which roles, how verified, when, on what evidence.
    ``evidence`` holds ``report_sha256``, ``report_uri``, ``model_card_sha256`` and
    ``model_card_uri`` (empty strings when not given)."""

    approval_id: str
    action: str
    artifact_sha256: str
    model_name: str
    model_version: str
    principal: str
    roles: tuple[str, ...]
    verified_by: str
    at_us: int
    evidence: dict[str, str]
    comment: str
    recorded_at_us: int = 0
    seq: int = 0
    chain_sha256: str = ""

    def body(self) -> dict[str, Any]:
        d = asdict(self)
        del d["recorded_at_us"], d["seq"], d["chain_sha256"]
        d["roles"] = list(self.roles)
        return {"kind": "approval", **d}

    @staticmethod
    def from_body(body: dict[str, Any], recorded_at_us: int, seq: int, chain: str) -> Approval:
        fields = {k: v for k, v in body.items() if k != "kind"}
        fields["roles"] = tuple(fields["roles"])
        return Approval(**fields, recorded_at_us=recorded_at_us, seq=seq, chain_sha256=chain)


@dataclass(frozen=True, slots=True)
class ArmTarget:
    """One model version an arm of a decision point sends traffic to, with its weight."""

    decision_point: str
    arm: str
    model_name: str
    model_version: str
    weight: float


@dataclass(frozen=True, slots=True)
class RouteChange:
    """A routing configuration taking effect: the full set of targets in force afterwards."""

    changed_at_us: int
    config_version: str
    diff: dict[str, Any]
    targets: tuple[ArmTarget, ...]
    source: str = ""
    change_id: str = ""
    recorded_at_us: int = 0
    seq: int = 0
    initiated_by: str = ""
    """Who asked for it (a canary run's starter); empty for a gateway's reload."""
    analysis: dict[str, Any] = field(default_factory=dict)
    """A canary controller's step: plan, evidence, verdict; empty for a gateway's reload."""
    unapproved: tuple[str, ...] = ()
    """Arms the gateway accepted with traffic to an unapproved version (approvals: warn)."""

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "route_change",
            "changed_at_us": self.changed_at_us,
            "config_version": self.config_version,
            "diff": self.diff,
            "targets": [asdict(t) for t in self.targets],
            "source": self.source,
        }
        # Only when set, so a reload's body (and its content-derived id) is what it always was.
        if self.initiated_by:
            body["initiated_by"] = self.initiated_by
        if self.analysis:
            body["analysis"] = self.analysis
        if self.unapproved:
            body["unapproved"] = list(self.unapproved)
        return body

    @staticmethod
    def from_body(
        body: dict[str, Any], change_id: str, recorded_at_us: int, seq: int
    ) -> RouteChange:
        return RouteChange(
            changed_at_us=int(body["changed_at_us"]),
            config_version=str(body["config_version"]),
            diff=dict(body["diff"]),
            targets=tuple(ArmTarget(**t) for t in body["targets"]),
            source=str(body["source"]),
            change_id=change_id,
            recorded_at_us=recorded_at_us,
            seq=seq,
            initiated_by=str(body.get("initiated_by", "")),
            analysis=dict(body.get("analysis", {})),
            unapproved=tuple(body.get("unapproved", ())),
        )


@dataclass(frozen=True, slots=True)
class RegisteredManifest:
    """A model manifest as registered, keyed by its artifact's sha256."""

    artifact_sha256: str
    name: str
    version: str
    manifest_json: str
    registered_at_us: int


@dataclass(frozen=True, slots=True)
class DecisionSummary:
    """One line of a decision listing."""

    decision_id: str
    decided_at_us: int
    decision_point: str
    entity_key: str
    model_name: str
    model_version: str
    arm: str
    score: float
    decision: str


@dataclass(frozen=True, slots=True)
class Count:
    """How many decisions in a selection had this model version, arm and decision."""

    model_name: str
    model_version: str
    arm: str
    decision: str
    count: int


@dataclass(frozen=True, slots=True)
class DecisionFilter:
    """A selection of decisions: by entity, model (and version) or reason code, within
    [since, until)."""

    since_us: int
    until_us: int
    entity_key: str = ""
    model_name: str = ""
    model_version: str = ""
    decision_point: str = ""
    decision: str = ""
    reason_code: str = ""
    """The principal reason's code (rank 1), or with ``reason_any_rank`` a code at any rank."""
    reason_any_rank: bool = False
    request_id: str = ""
    """The caller's request id: narrows a selection by one of the above (it has no index)."""


@dataclass(slots=True)
class DecisionPage:
    decisions: list[DecisionSummary] = field(default_factory=list)
    counts: list[Count] = field(default_factory=list)
    next_page_token: str = ""


@dataclass(frozen=True, slots=True)
class PurgeReport:
    """One purge run: everything whose time was before ``cutoff_us`` up to chain entry
    ``boundary_seq`` is gone; ``boundary_chain_sha256`` lets the chain be verified from there."""

    purge_id: str
    run_at_us: int
    cutoff_us: int
    boundary_seq: int
    boundary_chain_sha256: str
    deleted: dict[str, int]
    seq: int = 0

    def body(self) -> dict[str, Any]:
        d = asdict(self)
        del d["seq"], d["purge_id"]
        return {"kind": "purge", **d}


@dataclass(frozen=True, slots=True)
class AccessEntry:
    """One call to the store's API, as its access log keeps it (PCI DSS 10.2-style): who
    (``principal``, how it was verified, from where), when, which method under which permission
    and policy, on which decisions or with which query, and how it ended (``outcome``: ``OK``
    or the gRPC status name, with the refusal's message in ``detail``)."""

    access_id: str
    at_us: int
    principal: str
    verified_by: str
    peer: str
    method: str
    permission: str
    policy_version: str
    decision_ids: tuple[str, ...]
    query: dict[str, Any]
    outcome: str
    detail: str = ""
    recorded_at_us: int = 0
    seq: int = 0

    def body(self) -> dict[str, Any]:
        d = asdict(self)
        del d["recorded_at_us"], d["seq"]
        d["decision_ids"] = list(self.decision_ids)
        return {"kind": "access", **d}

    @staticmethod
    def from_body(body: dict[str, Any], recorded_at_us: int, seq: int) -> AccessEntry:
        fields = {k: v for k, v in body.items() if k != "kind"}
        fields["decision_ids"] = tuple(fields["decision_ids"])
        return AccessEntry(**fields, recorded_at_us=recorded_at_us, seq=seq)


@dataclass(frozen=True, slots=True)
class AccessFilter:
    """A selection of the access log: ``since <= at < until``, optionally one principal, one
    method (its short name, e.g. ``GetDecision``) and one decision id."""

    since_us: int
    until_us: int
    principal: str = ""
    method: str = ""
    decision_id: str = ""


@dataclass(slots=True)
class AccessPage:
    entries: list[AccessEntry] = field(default_factory=list)
    next_page_token: str = ""
