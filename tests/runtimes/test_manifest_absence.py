"""A manifest's optional features must say how their absence reaches the model; a manifest that
does not, or says it inconsistently, is refused with an error naming the feature."""

from __future__ import annotations

import math
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from runtimes.manifest import (
    MISSING_CATEGORY,
    BooleanFeature,
    CategoryFeature,
    Feature,
    NumberFeature,
    absent_value,
)

FEATURE: TypeAdapter[Feature] = TypeAdapter(Feature)


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ({"type": "number", "min": 0, "max": 9, "required": False}, "must say how its absence"),
        ({"type": "number", "min": 0, "max": 9, "absent": "missing"}, "a required feature has no"),
        (
            {"type": "number", "min": 0, "max": 9, "required": False, "absent": "default"},
            "needs a default value",
        ),
        (
            {"type": "number", "min": 0, "max": 9, "required": False, "absent": "default",
             "default": 12},
            "default 12 is outside [0, 9]",
        ),
        (
            {"type": "number", "min": 0, "max": 9, "required": False, "absent": "missing",
             "default": 1},
            "takes no default",
        ),
        (
            {"type": "category", "categories": ["a", "b"], "required": False,
             "absent": "default", "default": "c"},
            "default 'c' is not one of its categories",
        ),
        ({"type": "category", "categories": ["a", ""]}, "the empty string cannot be a category"),
        ({"type": "boolean", "required": False, "absent": "sometimes"}, "absent"),
    ],
)  # fmt: skip
def test_an_inconsistent_optional_feature_is_refused_naming_it(
    spec: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        FEATURE.validate_python({"name": "tenure", **spec})
    assert problem in str(caught.value)
    assert "tenure" in str(caught.value) or "absent" in str(caught.value)


def test_what_an_absent_feature_is_sent_as() -> None:
    missing_number = NumberFeature(name="x", min=0, max=1, required=False, absent="missing")
    assert math.isnan(float(absent_value(missing_number)))
    defaulted = NumberFeature(name="x", min=0, max=9, required=False, absent="default", default=3)
    assert absent_value(defaulted) == 3.0
    category = CategoryFeature(name="c", categories=("a",), required=False, absent="missing")
    assert absent_value(category) == MISSING_CATEGORY == ""
    flag = BooleanFeature(name="b", required=False, absent="default", default=False)
    assert absent_value(flag) is False


def test_a_required_feature_hashes_as_before_optional_features_existed() -> None:
    """``absent`` and ``default`` enter the feature schema hash only when set, so the schema
    version of every model built before them is unchanged."""
    from runtimes.manifest import _schema_fields

    required = NumberFeature(name="amount", min=0, max=1)
    assert set(_schema_fields(required)) == {
        "name",
        "type",
        "description",
        "required",
        "min",
        "max",
    }
    optional = NumberFeature(name="amount", min=0, max=1, required=False, absent="missing")
    assert _schema_fields(optional)["absent"] == "missing"
