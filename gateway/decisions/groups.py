"""Rows to groups: each row's arm and validated features, grouped by the version that answers.

A group is one runtime call. A row whose own fields or features are wrong gets its error in
``results`` and joins no group; in a batch the error's fields are prefixed with the row
(``rows[3].features.amount``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from gateway.decisions.inputs import ScoreInput
from gateway.decisions.validation import FeatureValidator, request_violations
from gateway.errors import FieldViolation, InvalidRequest
from gateway.recording.recorder import Recorded
from gateway.routing import splits as split
from gateway.routing.compiled import DecisionPoint
from gateway.runtime_client.targets import ModelTarget
from lineage.v1.record import FeatureScalar

ARM_PRIMARY = "primary"
ARM_CANARY = "canary"
ARM_PINNED = "pinned"
ARM_FALLBACK = "fallback"


class Group:
    """The rows one model version answers in one call, with their places in the request."""

    __slots__ = ("arm", "features", "indices", "rows", "target")

    def __init__(self, target: ModelTarget, arm: str) -> None:
        self.target = target
        self.arm = arm
        self.indices: list[int] = []
        self.rows: list[ScoreInput] = []
        self.features: list[dict[str, FeatureScalar]] = []
        """Each row's validated snapshot, in manifest order: what is scored and recorded."""


def arm_of(point: DecisionPoint, row: ScoreInput) -> tuple[ModelTarget, str]:
    """The canary for rows whose sticky bucket its split takes, the primary otherwise."""
    canary = point.canary
    if canary is not None:
        key = row.entity_key if canary.stickiness_key == "entity_key" else row.request_id
        if split.on_split(point.name, key, canary.buckets):
            return canary.target, ARM_CANARY
    return point.primary, ARM_PRIMARY


def _in_row(i: int, violations: Sequence[FieldViolation], count: int = 0) -> InvalidRequest:
    """The row's error: the violations shown, named by row, and the count of them all."""
    return InvalidRequest(
        [FieldViolation(f"rows[{i}].{v.field}", v.description) for v in violations], count
    )


def route_rows(
    point: DecisionPoint,
    rows: Sequence[ScoreInput],
    pinned: ModelTarget | None,
    validators: Mapping[str, FeatureValidator],
    results: list[Recorded | None],
    *,
    batch: bool,
) -> list[Group]:
    """The groups to call; rows refused are given their error in ``results``."""
    groups: dict[tuple[str, str], Group] = {}
    for i, row in enumerate(rows):
        if pinned is not None:
            target, arm = pinned, ARM_PINNED
        else:
            target, arm = arm_of(point, row)
        if batch:
            violations = request_violations(row.request_id, point.name, row.entity_key)
            if violations:
                results[i] = _in_row(i, violations)
                continue
        try:
            features = validators[target.served_name].validate(row.features)
        except InvalidRequest as e:
            results[i] = _in_row(i, e.violations, e.count) if batch else e
            continue
        key = (target.served_name, arm)
        group = groups.get(key)
        if group is None:
            group = groups[key] = Group(target, arm)
        group.indices.append(i)
        group.rows.append(row)
        group.features.append(features)
    return list(groups.values())
