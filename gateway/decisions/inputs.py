"""A Score call or ScoreBatch row as the core sees it, converted from protobuf at the edge."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gateway.decisions.validation import FeatureInput
from gateway.limits import MAX_BATCH_ROWS

__all__ = ["MAX_BATCH_ROWS", "ScoreInput"]


# Made per row and never kept: a plain (not frozen) dataclass (see gateway.attempts.answers).
@dataclass(slots=True)
class ScoreInput:
    """Plain python values, None for an unset feature."""

    request_id: str
    decision_point: str
    entity_key: str
    features: Mapping[str, FeatureInput]
    model_version: str = ""
