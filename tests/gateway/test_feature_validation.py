"""Requests are checked against the routed model's manifest; every violation names its field."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any
from unittest.mock import ANY

import pytest

from gateway.decisions.validation import FeatureValidator, request_violations
from gateway.errors import InvalidRequest
from runtimes.manifest import Manifest
from runtimes.training.datasets import sample_requests

Features = dict[str, Any]


@pytest.fixture(scope="module")
def card_fraud(manifests: dict[tuple[str, str], Manifest]) -> FeatureValidator:
    return FeatureValidator(manifests[("card-fraud", "1")])


def _valid() -> Features:
    return dict(sample_requests("card-fraud", 1, seed=3)[0])


BAD: list[tuple[str, Callable[[Features], object], str, str]] = [
    ("missing", lambda f: f.pop("channel"), "channel", "required feature is missing"),
    ("unset-kind", lambda f: f.update(channel=None), "channel", "required feature is missing"),
    ("unknown", lambda f: f.update(loyalty_tier="gold"), "loyalty_tier", "unknown feature"),
    ("string-for-number", lambda f: f.update(amount="12.5"), "amount", "must be a number"),
    ("bool-for-number", lambda f: f.update(amount=True), "amount", "must be a number"),
    ("number-for-category", lambda f: f.update(channel=2.0), "channel", "must be a category"),
    ("string-for-boolean", lambda f: f.update(card_present="yes"), "card_present", "boolean"),
    ("number-for-boolean", lambda f: f.update(card_present=1.0), "card_present", "boolean"),
    ("nan", lambda f: f.update(amount=math.nan), "amount", "got NaN"),
    ("plus-inf", lambda f: f.update(amount=math.inf), "amount", "got inf"),
    ("minus-inf", lambda f: f.update(amount=-math.inf), "amount", "got -inf"),
    ("above-max", lambda f: f.update(hour_of_day=24.0), "hour_of_day", "24 is outside [0, 23]"),
    ("below-min", lambda f: f.update(amount=-0.01), "amount", "-0.01 is outside [0, 50000]"),
    ("unknown-category", lambda f: f.update(channel="pigeon"), "channel", "'pigeon' is not"),
    ("category-case", lambda f: f.update(channel="POS"), "channel", "not a known category"),
]


@pytest.mark.parametrize(
    ("change", "field", "problem"), [b[1:] for b in BAD], ids=[b[0] for b in BAD]
)
def test_a_bad_feature_is_refused_naming_the_field(
    card_fraud: FeatureValidator, change: Callable[[Features], object], field: str, problem: str
) -> None:
    features = _valid()
    change(features)
    with pytest.raises(InvalidRequest) as info:
        card_fraud.validate(features)
    [violation] = info.value.violations
    assert violation.field == f"features.{field}"
    assert problem in violation.description
    assert f"features.{field}" in str(info.value)


def test_every_violation_is_reported_at_once(card_fraud: FeatureValidator) -> None:
    features = _valid()
    del features["amount"]
    features.update(channel="pigeon", hour_of_day=math.nan, zeta=1.0, alpha="x")
    with pytest.raises(InvalidRequest) as info:
        card_fraud.validate(features)
    fields = [v.field for v in info.value.violations]
    assert fields == [
        "features.amount",
        "features.channel",
        "features.hour_of_day",
        "features.alpha",
        "features.zeta",
    ]


def test_a_valid_request_gives_the_snapshot_in_manifest_order(
    card_fraud: FeatureValidator, manifests: dict[tuple[str, str], Manifest]
) -> None:
    features = _valid()
    features["txn_count_24h"] = 3  # an int is a number
    shuffled = dict(reversed(list(features.items())))
    snapshot = card_fraud.validate(shuffled)
    assert list(snapshot) == [f.name for f in manifests[("card-fraud", "1")].features]
    assert snapshot["txn_count_24h"] == 3.0 and type(snapshot["txn_count_24h"]) is float
    assert type(snapshot["card_present"]) is bool
    assert snapshot == {k: float(v) if type(v) is int else v for k, v in features.items()}


def test_range_bounds_are_inclusive(card_fraud: FeatureValidator) -> None:
    features = _valid()
    features.update(hour_of_day=0.0, amount=50000.0)
    assert card_fraud.validate(features)["amount"] == 50000.0


@pytest.mark.parametrize(
    ("request_id", "decision_point", "entity_key", "fields"),
    [
        ("r-1", "card-fraud", "c-1", []),
        ("", "card-fraud", "c-1", ["request_id"]),
        ("r" * 129, "card-fraud", "c-1", ["request_id"]),
        ("r" * 128, "card-fraud", "c-1", []),
        ("r-1", "", "c-1", ["decision_point"]),
        ("r-1", "card-fraud", "", ["entity_key"]),
        ("", "", "", ["request_id", "decision_point", "entity_key"]),
    ],
)
def test_request_fields_are_checked(
    request_id: str, decision_point: str, entity_key: str, fields: list[str]
) -> None:
    violations = request_violations(request_id, decision_point, entity_key)
    assert [v.field for v in violations] == fields


def test_a_sensitive_features_refusal_names_the_field_but_never_the_value(
    manifests: dict[tuple[str, str], Manifest],
) -> None:
    validator = FeatureValidator(manifests[("credit-risk", "1")])
    features = dict(sample_requests("credit-risk", 1, seed=3)[0])
    features.update(age=131.0, annual_income=7_654_321.0)
    with pytest.raises(InvalidRequest) as info:
        validator.validate(features)
    shown = {v.field: v.description for v in info.value.violations}
    assert shown == {"features.age": "outside [18, 100]", "features.annual_income": ANY}
    assert "7654321" not in str(info.value) and "7.65432e+06" not in str(info.value)
    assert "131" not in str(info.value)


def test_a_card_number_in_a_category_is_not_repeated_even_where_none_is_expected(
    card_fraud: FeatureValidator,
) -> None:
    features = _valid()
    features["merchant_category"] = "4111 1111 1111 1111"
    with pytest.raises(InvalidRequest) as info:
        card_fraud.validate(features)
    assert "features.merchant_category" in str(info.value)
    assert "1111 1111" not in str(info.value)


def test_an_entity_key_or_request_id_with_control_characters_is_not_repeated() -> None:
    violations = request_violations("4111111111111111\n", "card-fraud", "5500000000000004\x00")
    assert {v.field for v in violations} == {"request_id", "entity_key"}
    assert not any("41111" in v.description or "55000" in v.description for v in violations)
