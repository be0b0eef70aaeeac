"""The client helpers callers use to build ScoreBatch requests."""

from __future__ import annotations

import pytest

from scoring.v1.requests import score_batch_columns_request


def test_the_columnar_request_has_one_column_per_feature_with_missing_rows_marked() -> None:
    rows = [
        ("r-0", "c-0", {"amount": 12, "channel": "web", "card_present": True}),
        ("r-1", "c-1", {"amount": 7.5, "card_present": False}),
    ]
    request = score_batch_columns_request("card-fraud", rows, model_version="2")
    columns = request.columns
    assert (request.decision_point, request.model_version) == ("card-fraud", "2")
    assert list(columns.request_ids) == ["r-0", "r-1"]
    assert list(columns.entity_keys) == ["c-0", "c-1"]
    by_name = {c.name: c for c in columns.features}
    assert list(by_name["amount"].numbers.values) == [12.0, 7.5]
    # True is an int in Python, but a yes/no feature on the wire.
    assert list(by_name["card_present"].bools.values) == [True, False]
    assert list(by_name["channel"].strings.values) == ["web", ""]
    assert list(by_name["channel"].missing_rows) == [1]
    assert not request.rows


def test_a_feature_with_values_of_two_kinds_cannot_be_a_column() -> None:
    rows = [("r-0", "c-0", {"amount": 1.0}), ("r-1", "c-1", {"amount": "high"})]
    with pytest.raises(ValueError, match="'amount' has both numbers and strings"):
        score_batch_columns_request("card-fraud", rows)
