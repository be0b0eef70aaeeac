"""The rules that decide a load run's verdict: response checks, thresholds, the canary's bound."""

from __future__ import annotations

import pytest

from loadtests.checks import (
    RunSummary,
    Thresholds,
    binomial_bound,
    canary_check,
    check_batch_response,
    check_response,
    fallback_check,
)
from scoring.v1 import scoring_pb2


def summary(requests: int = 1000, failures: int = 0, p99_ms: float = 20.0) -> RunSummary:
    return RunSummary("steady", requests, failures, 5.0, p99_ms, 100.0, {"primary": requests})


def test_a_complete_response_passes_its_check() -> None:
    response = scoring_pb2.ScoreResponse(
        decision_id="0190", decision="approve", model_name="card-fraud", model_version="1"
    )
    assert check_response(response) is None


@pytest.mark.parametrize("missing", ["decision_id", "decision", "model_name", "model_version"])
def test_a_response_without_decision_or_model_identity_fails(missing: str) -> None:
    fields = dict(decision_id="0190", decision="approve", model_name="m", model_version="1")
    del fields[missing]
    error = check_response(scoring_pb2.ScoreResponse(**fields))
    assert error is not None and missing in str(error)


@pytest.mark.parametrize(
    ("thresholds", "run", "passed"),
    [
        (Thresholds(p99_ms=50.0), summary(), True),
        (Thresholds(p99_ms=10.0), summary(), False),
        (Thresholds(), summary(failures=1), False),
        (Thresholds(max_fail_ratio=0.01), summary(failures=5), True),
        (Thresholds(), summary(requests=0), False),
    ],
)
def test_thresholds_decide_the_run(thresholds: Thresholds, run: RunSummary, passed: bool) -> None:
    run.checks = thresholds.evaluate(run)
    assert run.passed is passed


def test_canary_share_inside_the_binomial_bound_passes() -> None:
    assert canary_check({"primary": 9_030, "canary": 970}, 0.10).ok is True


def test_canary_share_outside_the_binomial_bound_fails() -> None:
    # 4 sigmas at n=10,000, w=0.1 is 0.012: 13% is out.
    assert binomial_bound(0.1, 10_000, 4.0) == pytest.approx(0.012)
    assert canary_check({"primary": 8_700, "canary": 1_300}, 0.10).ok is False


def test_routes_without_canary_are_reported_not_failed() -> None:
    check = canary_check({"primary": 500}, None)
    assert check.ok is None and "no canary" in check.detail


def test_expected_canary_with_no_canary_answers_fails() -> None:
    assert canary_check({"primary": 500}, 0.05).ok is False


def test_fallback_share_is_reported() -> None:
    check = fallback_check({"primary": 300, "fallback": 100}, failures=0)
    assert check.ok is None and "100/400" in check.detail and "0.2500" in check.detail


def _batch(rows: int) -> scoring_pb2.ScoreBatchResponse:
    response = scoring_pb2.ScoreBatchResponse()
    for i in range(rows):
        decision = response.results.add().decision
        decision.decision_id, decision.decision = f"0190-{i}", "approve"
        decision.model_name, decision.model_version = "card-fraud", "1"
    return response


def test_a_batch_answer_counts_only_when_every_row_is_a_usable_decision() -> None:
    assert check_batch_response(_batch(3), 3) is None
    assert "2 results for 3 rows" in str(check_batch_response(_batch(2), 3))
    unscored = _batch(3)
    unscored.results[1].error.code = "INVALID_ARGUMENT"
    unscored.results[1].error.message = "rows[1].features.amount: required feature is missing"
    assert "row 1 not scored: INVALID_ARGUMENT" in str(check_batch_response(unscored, 3))
    anonymous = _batch(3)
    anonymous.results[2].decision.model_version = ""
    assert "row 2: response without model_version" in str(check_batch_response(anonymous, 3))
