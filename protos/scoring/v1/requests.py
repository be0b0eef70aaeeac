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


def _kind(value: FeatureInput) -> str:
    if isinstance(value, bool):
        return "bools"
    return "numbers" if isinstance(value, int | float) else "strings"


_PLACEHOLDER: dict[str, FeatureInput] = {"bools": False, "numbers": 0.0, "strings": ""}


def score_batch_columns_request(
    decision_point: str,
    rows: Sequence[tuple[str, str, Mapping[str, FeatureInput]]],
    model_version: str = "",
) -> scoring_pb2.ScoreBatchRequest:
    """The same call as ``score_batch_request`` in the columnar form: one column per feature
    named in any row (a row without it has it missing). ValueError if one feature's values are
    of different kinds, which a column cannot hold."""
    kinds: dict[str, str] = {}
    for _, _, features in rows:
        for name, value in features.items():
            kind = kinds.setdefault(name, _kind(value))
            if kind != _kind(value):
                raise ValueError(f"feature {name!r} has both {kind} and {_kind(value)} values")
    columns = scoring_pb2.BatchColumns(
        request_ids=[r[0] for r in rows], entity_keys=[r[1] for r in rows]
    )
    for name, kind in kinds.items():
        column = columns.features.add(name=name)
        placeholder = _PLACEHOLDER[kind]
        values = []
        for i, (_, _, features) in enumerate(rows):
            found = features.get(name)
            if found is None:
                column.missing_rows.append(i)
            value = placeholder if found is None else found
            values.append(float(value) if kind == "numbers" else value)
        getattr(column, kind).values.extend(values)
    return scoring_pb2.ScoreBatchRequest(
        decision_point=decision_point, model_version=model_version, columns=columns
    )
