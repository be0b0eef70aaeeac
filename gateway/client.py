"""Client-side helpers for callers of ScoringService: the demo, tests and load generators."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from scoring.v1 import scoring_pb2

FeatureInput = float | int | str | bool


def feature_value(value: FeatureInput) -> scoring_pb2.FeatureValue:
    # bool before number: True is an int in Python but a boolean feature on the wire.
    if isinstance(value, bool):
        return scoring_pb2.FeatureValue(bool_value=value)
    if isinstance(value, int | float):
        return scoring_pb2.FeatureValue(number_value=float(value))
    return scoring_pb2.FeatureValue(string_value=value)


def score_request(
    request_id: str,
    decision_point: str,
    entity_key: str,
    features: Mapping[str, FeatureInput],
    model_version: str = "",
) -> scoring_pb2.ScoreRequest:
    return scoring_pb2.ScoreRequest(
        request_id=request_id,
        decision_point=decision_point,
        entity_key=entity_key,
        features={name: feature_value(v) for name, v in features.items()},
        model_version=model_version,
    )


def score_batch_request(
    decision_point: str,
    rows: Sequence[tuple[str, str, Mapping[str, FeatureInput]]],
    model_version: str = "",
) -> scoring_pb2.ScoreBatchRequest:
    """A ScoreBatch request from ``(request_id, entity_key, features)`` rows."""
    return scoring_pb2.ScoreBatchRequest(
        decision_point=decision_point,
        model_version=model_version,
        rows=[
            scoring_pb2.ScoreBatchRow(
                request_id=request_id,
                entity_key=entity_key,
                features={name: feature_value(v) for name, v in features.items()},
            )
            for request_id, entity_key, features in rows
        ],
    )
