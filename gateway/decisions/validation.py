"""Request checks: the API's own fields, and features against a model's manifest.

A ``FeatureValidator`` is compiled once per manifest (at config load) into a flat tuple of checks,
so a request costs one dictionary lookup and a couple of comparisons per feature. Every violation
is counted, but only those a refusal shows are described (``gateway.errors.Violations``): unknown
names are found as one set difference and only the first few (sorted) get a message, so a row of
hundreds of unknown features costs a set difference and a sort, not hundreds of messages.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Final

from gateway.errors import FieldViolation, InvalidRequest, Violations
from gateway.limits import (
    MAX_DECISION_POINT_CHARS,
    MAX_ENTITY_KEY_CHARS,
    MAX_FEATURES,
    MAX_MODEL_VERSION_CHARS,
    MAX_REQUEST_ID_CHARS,
    MAX_STRING_VALUE_CHARS,
    has_control,
    shown,
    shown_unless_card_like,
)
from lineage.v1.record import FeatureScalar
from runtimes.manifest import CategoryFeature, Manifest, NumberFeature

# A feature value as converted at the edge; None is a FeatureValue with no kind set.
FeatureInput = FeatureScalar | int | None
Features = Mapping[str, FeatureInput]

_NUMBER: Final = 0
_CATEGORY: Final = 1
_BOOLEAN: Final = 2
_ABSENT: Final = object()
_KIND_NAMES = {str: "a string", bool: "a boolean", float: "a number", int: "a number"}


def _type_name(value: object) -> str:
    return _KIND_NAMES.get(type(value), type(value).__name__)


def _fmt(x: float) -> str:
    return f"{x:g}"


class FeatureValidator:
    """Checks a feature map against one model version's schema and returns the snapshot to score."""

    __slots__ = ("_checks", "_known", "model")

    def __init__(self, manifest: Manifest) -> None:
        self.model = manifest.served_name
        checks: list[tuple[str, int, float, float, frozenset[str], bool, str, bool]] = []
        for f in manifest.features:
            # A sensitive feature's refusal names the field, never the value: refusals are
            # logged, and the caller's own message travels through their logs too.
            quiet = f.sensitive != "none"
            if isinstance(f, NumberFeature):
                checks.append((f.name, _NUMBER, f.min, f.max, frozenset(), f.required, "", quiet))
            elif isinstance(f, CategoryFeature):
                allowed = ", ".join(f.categories)
                categories = frozenset(f.categories)
                checks.append((f.name, _CATEGORY, 0.0, 0.0, categories, f.required, allowed, quiet))
            else:
                checks.append((f.name, _BOOLEAN, 0.0, 0.0, frozenset(), f.required, "", quiet))
        self._checks = tuple(checks)
        self._known = frozenset(f.name for f in manifest.features)

    def validate(self, features: Features) -> dict[str, FeatureScalar]:
        """The snapshot in manifest order (numbers as float); raises InvalidRequest otherwise.

        Optional features that are absent are left out of the snapshot.
        """
        if len(features) > MAX_FEATURES:
            raise InvalidRequest(
                [FieldViolation("features", f"{len(features):,} features; at most {MAX_FEATURES}")]
            )
        snapshot: dict[str, FeatureScalar] = {}
        violations: Violations | None = None
        present = 0
        for name, kind, low, high, categories, required, allowed, quiet in self._checks:
            value = features.get(name, _ABSENT)
            if value is not _ABSENT:
                present += 1
            problem = ""
            if value is None or value is _ABSENT:
                if not required:
                    continue
                problem = "required feature is missing"
            elif kind == _NUMBER:
                t = type(value)
                if t is float or t is int:
                    number = float(value)  # type: ignore[arg-type]
                    if low <= number <= high:
                        snapshot[name] = number
                        continue
                    if math.isnan(number):
                        problem = "must be a finite number, got NaN"
                    elif math.isinf(number):
                        problem = f"must be a finite number, got {_fmt(number)}"
                    elif quiet:
                        problem = f"outside [{_fmt(low)}, {_fmt(high)}]"
                    else:
                        problem = f"{_fmt(number)} is outside [{_fmt(low)}, {_fmt(high)}]"
                else:
                    problem = f"must be a number, got {_type_name(value)}"
            elif kind == _CATEGORY:
                if type(value) is str:
                    if value in categories:
                        snapshot[name] = value
                        continue
                    if len(value) > MAX_STRING_VALUE_CHARS:
                        problem = (
                            f"a string of {len(value):,} characters; "
                            f"at most {MAX_STRING_VALUE_CHARS}"
                        )
                    elif quiet:
                        problem = f"not a known category (one of {allowed})"
                    else:
                        # Even a feature labelled none can be handed a card number by mistake.
                        what = shown_unless_card_like(value)
                        problem = f"{what} is not a known category (one of {allowed})"
                else:
                    problem = f"must be a category (string), got {_type_name(value)}"
            elif type(value) is bool:
                snapshot[name] = value
                continue
            else:
                problem = f"must be a boolean, got {_type_name(value)}"
            if violations is None:
                violations = Violations()
            violations.add(f"features.{name}", problem)
        if present != len(features):
            if violations is None:
                violations = Violations()
            self._unknown(features, violations)
        if violations:
            raise violations.error()
        return snapshot

    def _unknown(self, features: Features, violations: Violations) -> None:
        """The names not in the schema: all counted, the first (sorted) few described."""
        unknown = features.keys() - self._known
        described = sorted(unknown)[: violations.room] if violations.room > 0 else []
        for k in described:
            violations.add(f"features.{_name(k)}", f"unknown feature for model {self.model}")
        violations.add_counted(len(unknown) - len(described))


def _name(name: str) -> str:
    """A feature name as it may appear in a field path: as it is if it can be read there, else
    quoted (cut, control and invisible characters escaped): an empty name, one with spaces at
    either end, or one with a character that does not print (NUL, zero-width space, ...) would
    leave the path ending in nothing visible, or in something the reader cannot tell apart."""
    if (
        not name
        or len(name) > MAX_SHOWN_NAME_CHARS
        or not name.isprintable()
        or name.strip() != name
    ):
        return shown(name, MAX_SHOWN_NAME_CHARS)
    return name


MAX_SHOWN_NAME_CHARS = 64


def _identifier(
    field: str,
    value: str,
    limit: int,
    violations: list[FieldViolation],
    required: bool = True,
    personal: bool = False,
) -> None:
    if not value:
        if required:
            violations.append(FieldViolation(field, "must not be empty"))
    elif len(value) > limit:
        violations.append(
            FieldViolation(field, f"must be at most {limit} characters, got {len(value):,}")
        )
    elif has_control(value):
        # A customer's key or a caller's id may be a card number: named, never repeated.
        got = "" if personal else f", got {shown(value)}"
        violations.append(FieldViolation(field, f"must not contain control characters{got}"))


def request_violations(
    request_id: str, decision_point: str, entity_key: str, model_version: str = ""
) -> list[FieldViolation]:
    """Problems with the API's own fields (not the features)."""
    violations: list[FieldViolation] = []
    _identifier("request_id", request_id, MAX_REQUEST_ID_CHARS, violations, personal=True)
    _identifier("decision_point", decision_point, MAX_DECISION_POINT_CHARS, violations)
    _identifier("entity_key", entity_key, MAX_ENTITY_KEY_CHARS, violations, personal=True)
    _identifier("model_version", model_version, MAX_MODEL_VERSION_CHARS, violations, False)
    return violations


def call_violations(decision_point: str, model_version: str) -> list[FieldViolation]:
    """Problems with a ScoreBatch call's own fields."""
    violations: list[FieldViolation] = []
    _identifier("decision_point", decision_point, MAX_DECISION_POINT_CHARS, violations)
    _identifier("model_version", model_version, MAX_MODEL_VERSION_CHARS, violations, False)
    return violations
