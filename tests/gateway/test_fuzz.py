"""Findings of the gateway's fuzz suite (issue 20), each pinned by a focused test."""

from __future__ import annotations

import pytest

from gateway.decisions.validation import FeatureValidator
from gateway.errors import InvalidRequest
from runtimes.manifest import Manifest
from runtimes.training.datasets import sample_requests

# --- Findings of the fuzz suite, each pinned by a focused test -----------------------------


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("", "features.''"),
        (" ", "features.' '"),
        ("amount ", "features.'amount '"),
        ("\u200b", "features.'\\u200b'"),
        ("\xa0amount", "features.'\\xa0amount'"),
        ("montant_é", "features.montant_é"),  # printable: as it is
    ],
)
def test_an_unknown_feature_whose_name_would_not_read_in_a_path_is_quoted(
    manifests: dict[tuple[str, str], Manifest], name: str, field: str
) -> None:
    """Finding (seed 20): an unknown feature named "" was reported as the field `features.`,
    naming nothing; " " and a zero-width space looked the same."""
    validator = FeatureValidator(manifests[("card-fraud", "1")])
    features = {**sample_requests("card-fraud", 1, seed=1)[0], name: 1.0}
    with pytest.raises(InvalidRequest) as refused:
        validator.validate(features)
    assert [v.field for v in refused.value.violations] == [field]
