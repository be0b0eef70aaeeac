"""ScoreBatch's columnar form (``BatchColumns``) turned into the rows the core scores.

Why a second form: in the row form every row carries a map of FeatureValue messages, and reading
them back costs the gateway 4-10 us per row (measured without and with cProfile; its whole work
per ScoreBatch row is ~30 us in process). A column is one packed list per feature, read in one
native call, and its name is sent once.

Only the shape is checked here (lengths, names, row indexes): a bad shape fails the whole call
with INVALID_ARGUMENT naming the column. More columns than a row may have features are refused
before any column is read: 3 MiB holds over a million empty columns, each of which would
otherwise be read and checked on the event loop. Values are checked per row by the same
validator as the row form, so a bad value fails only its row, with the same message the row
form would get.
"""

from __future__ import annotations

from gateway.decisions.service import MAX_BATCH_ROWS, ScoreInput
from gateway.decisions.validation import FeatureInput
from gateway.errors import FieldViolation, InvalidRequest, Violations
from gateway.limits import MAX_FEATURES
from scoring.v1 import scoring_pb2


def column_values(
    column: scoring_pb2.FeatureColumn, rows: int, where: str, violations: Violations
) -> list[FeatureInput] | None:
    """The column's value per row (None where missing); None after adding what is wrong."""
    kind = column.WhichOneof("values")
    if kind is None:
        violations.add(where, "no values (set numbers, strings or bools)")
        return None
    values: list[FeatureInput] = list(getattr(column, kind).values)
    if len(values) != rows:
        violations.add(f"{where}.{kind}", f"{len(values)} values for {rows} rows")
        return None
    for index in column.missing_rows:
        if index >= rows:
            violations.add(f"{where}.missing_rows", f"row {index} is out of range ({rows} rows)")
            return None
        values[index] = None
    return values


def column_rows(decision_point: str, columns: scoring_pb2.BatchColumns) -> list[ScoreInput]:
    """One ScoreInput per row; InvalidRequest (every violation named) if the shape is wrong."""
    rows = len(columns.request_ids)
    if rows > MAX_BATCH_ROWS:
        raise InvalidRequest(
            [
                FieldViolation(
                    "columns.request_ids", f"{rows} rows; at most {MAX_BATCH_ROWS} per call"
                )
            ]
        )
    if len(columns.features) > MAX_FEATURES:
        raise InvalidRequest(
            [
                FieldViolation(
                    "columns.features",
                    f"{len(columns.features):,} columns; at most {MAX_FEATURES} (features per row)",
                )
            ]
        )
    violations = Violations()
    entity_keys = list(columns.entity_keys)
    if len(entity_keys) != rows:
        violations.add(
            "columns.entity_keys",
            f"{len(entity_keys)} values for {rows} rows (one per columns.request_ids)",
        )
    names: list[str] = []
    values: list[list[FeatureInput]] = []
    seen: set[str] = set()
    for k, column in enumerate(columns.features):
        where = f"columns.features[{k}]"
        if column.name in seen:
            violations.add(f"{where}.name", f"{column.name!r} has a column already")
            continue
        seen.add(column.name)
        found = column_values(column, rows, where, violations)
        if found is not None:
            names.append(column.name)
            values.append(found)
    if violations:
        raise violations.error()
    per_row = zip(*values, strict=True) if values else iter([()] * rows)
    return [
        ScoreInput(request_id, decision_point, entity_key, dict(zip(names, row, strict=True)))
        for request_id, entity_key, row in zip(
            columns.request_ids, entity_keys, per_row, strict=True
        )
    ]
