"""The access policy file: strict schema with paths in its errors, deny by default, patterns."""

from __future__ import annotations

import pytest

from security.errors import PermissionDenied, SecurityConfigError
from security.policy import parse_policy, policy_version
from security.policy_schema import LineagePermission

POLICY = b"""
scoring:
  - principals: ["spiffe://bank/ns/payments/sa/*", "svc-exact"]
    decision_points: [card-fraud]
  - principals: ["spiffe://bank/ns/risk/**"]
    decision_points: ["*"]
    pin_versions: true
lineage:
  - principals: ["spiffe://bank/ns/risk/sa/analyst"]
    permissions: [read_decisions, read_features]
"""


def test_a_principal_is_allowed_only_what_a_grant_names() -> None:
    policy = parse_policy(POLICY, "policy.yaml")
    policy.check_score("spiffe://bank/ns/payments/sa/core", "card-fraud", pinned=False)
    policy.check_score("svc-exact", "card-fraud", pinned=False)
    policy.check_score("spiffe://bank/ns/risk/sa/x/y", "credit-risk", pinned=True)
    policy.check_lineage("spiffe://bank/ns/risk/sa/analyst", LineagePermission.READ_FEATURES)
    denied = [
        ("spiffe://bank/ns/payments/sa/core", "credit-risk", False, "score:credit-risk"),
        ("spiffe://bank/ns/payments/sa/core", "card-fraud", True, "pin:card-fraud"),
        # '*' is one path segment: deeper names and other namespaces do not match.
        ("spiffe://bank/ns/payments/sa/core/x", "card-fraud", False, "score:card-fraud"),
        ("spiffe://bank/ns/payments-evil/sa/core", "card-fraud", False, "score:card-fraud"),
        ("svc-exact2", "card-fraud", False, "score:card-fraud"),
        ("", "card-fraud", False, "score:card-fraud"),
    ]
    for principal, point, pinned, permission in denied:
        with pytest.raises(PermissionDenied) as caught:
            policy.check_score(principal, point, pinned=pinned)
        assert caught.value.permission == permission
    with pytest.raises(PermissionDenied, match="'lineage:purge'"):
        policy.check_lineage("spiffe://bank/ns/risk/sa/analyst", LineagePermission.PURGE)


def test_an_empty_policy_denies_everything() -> None:
    policy = parse_policy(b"", "empty.yaml")
    with pytest.raises(PermissionDenied):
        policy.check_score("anyone", "card-fraud", pinned=False)


def test_the_version_is_the_content_hash() -> None:
    assert parse_policy(POLICY, "a").version == policy_version(POLICY)
    assert parse_policy(POLICY + b"\n", "a").version != policy_version(POLICY)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (b"scoring:\n  - principals: [a]\n    decision_point: [x]\n",
         "scoring[0].decision_point: Extra inputs are not permitted"),
        (b"scoring:\n  - principals: []\n    decision_points: [x]\n",
         "scoring[0].principals: List should have at least 1 item"),
        (b"lineage:\n  - principals: [a]\n    permissions: [delete_everything]\n",
         "lineage[0].permissions[0]: Input should be"),
        (b"scoring:\n  - principals: [' a']\n    decision_points: [x]\n",
         "scoring[0].principals: Value error"),
        (b"admins: [me]\n", "admins: Extra inputs are not permitted"),
        (b"scoring: [\n", "not valid YAML"),
    ],
)  # fmt: skip
def test_a_bad_policy_is_refused_naming_the_path(text: bytes, error: str) -> None:
    with pytest.raises(SecurityConfigError) as caught:
        parse_policy(text, "policy.yaml")
    assert str(caught.value).startswith("policy.yaml: ")
    assert error in str(caught.value)


def test_approvers_hold_the_roles_of_every_grant_matching_them() -> None:
    policy = parse_policy(
        b"lineage:\n"
        b"  - principals: ['spiffe://bank/ns/mv/sa/*']\n"
        b"    permissions: [approve_models]\n    roles: [validator]\n"
        b"  - principals: ['spiffe://bank/ns/mv/sa/lead']\n"
        b"    permissions: [approve_models, read_approvals]\n    roles: [model_owner]\n",
        "p",
    )
    lead = policy.grants("spiffe://bank/ns/mv/sa/lead")
    assert lead.roles == {"validator", "model_owner"}
    assert LineagePermission.APPROVE_MODELS in lead.lineage
    assert policy.grants("spiffe://bank/ns/mv/sa/other").roles == {"validator"}
    assert policy.grants("someone-else").roles == frozenset()


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (b"lineage:\n  - principals: [a]\n    permissions: [approve_models]\n",
         "lineage[0]: Value error, approve_models needs roles"),
        (b"lineage:\n  - principals: [a]\n    permissions: [read_decisions]\n"
         b"    roles: [validator]\n",
         "lineage[0]: Value error, roles are only for approve_models grants"),
        (b"lineage:\n  - principals: [a]\n    permissions: [approve_models]\n"
         b"    roles: [Validator]\n",
         "lineage[0].roles[0]: String should match pattern"),
    ],
)  # fmt: skip
def test_a_bad_approver_grant_is_refused_naming_the_path(text: bytes, error: str) -> None:
    with pytest.raises(SecurityConfigError) as caught:
        parse_policy(text, "policy.yaml")
    assert error in str(caught.value)
