"""The access policy file's schema: strict (an unknown key is an error, not a no-op).

::

    scoring:                          # who may call ScoringService Score/ScoreBatch
      - principals: ["spiffe://bank/ns/payments/*"]
        decision_points: [card-fraud]   # or ["*"]: every decision point
        pin_versions: false             # may set model_version (bypasses canaries)
    lineage:                          # who may call each LineageService method group
      - principals: ["spiffe://bank/ns/risk/sa/analyst"]
        permissions: [read_decisions, read_features]
      - principals: [j.validator]
        permissions: [approve_models]
        roles: [validator]              # what their approvals record

A principal is matched exactly, or as a pattern where ``*`` stands for any characters but ``/``
(one path segment) and ``**`` for any characters at all. Nothing is allowed that no grant allows.
"""

from __future__ import annotations

import enum
from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

Name = Annotated[str, StringConstraints(min_length=1, max_length=512)]
Role = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]


class LineagePermission(enum.StrEnum):
    """LineageService's method groups, as a policy grants them."""

    READ_DECISIONS = "read_decisions"
    """Decisions, their model, route and reasons (no feature values or entity keys)."""
    READ_FEATURES = "read_features"
    """Feature values and entity keys of decisions: personal data."""
    RECORD_OVERRIDES = "record_overrides"
    RECORD_OUTCOMES = "record_outcomes"
    PURGE = "purge"
    CHECKPOINTS = "checkpoints"
    """Exporting and verifying the tamper-evident chain's checkpoints."""
    INGEST = "ingest"
    """Writing decision records (the store's OTLP receiver): what gateways hold."""
    RECORD_ROUTE_CHANGES = "record_route_changes"
    """Recording that a routing configuration took effect: what gateways hold."""
    REGISTER_MODELS = "register_models"
    """Registering model manifests (release pipelines)."""
    READ_ACCESS_LOG = "read_access_log"
    """Reading the store's own log of who read or wrote lineage: auditors."""
    APPROVE_MODELS = "approve_models"
    """Approving model versions and revoking approvals; a grant of it names the roles the
    approvals record (``roles``)."""
    READ_APPROVALS = "read_approvals"
    """Reading model versions' approvals: what gateways check a routing config against."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_principals(values: list[str]) -> list[str]:
    for value in values:
        if value != value.strip() or not value.isprintable():
            raise ValueError(f"{value!r}: no spaces at either end or control characters")
        if "***" in value:
            raise ValueError(f"{value!r}: '*' is one segment and '**' anything; '***' is neither")
    return values


class ScoringGrant(_Strict):
    principals: list[Name] = Field(min_length=1)
    decision_points: list[Name] = Field(min_length=1)
    pin_versions: bool = False
    description: str = ""

    _principals = field_validator("principals")(_check_principals)


class LineageGrant(_Strict):
    principals: list[Name] = Field(min_length=1)
    permissions: list[LineagePermission] = Field(min_length=1)
    roles: list[Role] = []
    """What the principals approve as (``model_owner``, ``validator``): recorded with each
    approval, so it comes from the policy and never from the request."""
    description: str = ""

    _principals = field_validator("principals")(_check_principals)

    @model_validator(mode="after")
    def _roles_with_approvals(self) -> LineageGrant:
        approves = LineagePermission.APPROVE_MODELS in self.permissions
        if approves and not self.roles:
            raise ValueError("approve_models needs roles: the role each approval records")
        if self.roles and not approves:
            raise ValueError("roles are only for approve_models grants")
        return self


class PolicyConfig(_Strict):
    """The whole file: both sections may be empty (deny everything there)."""

    scoring: list[ScoringGrant] = []
    lineage: list[LineageGrant] = []
