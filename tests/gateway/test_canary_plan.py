"""The canary plan's validation and the verdict rules, on values (docs/model-risk.md)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.canary.errors import PlanError
from gateway.canary.plan import parse_plan
from gateway.canary.verdict import ArmEvidence, Evidence, judge

PLAN = """
decision_point: card-fraud
candidate: {model: card-fraud, version: "2"}
steps: [1, 5, 25, 50, 100]
dwell_s: 600
min_decisions: 500
"""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (PLAN.replace("[1, 5, 25, 50, 100]", "[1, 25, 5, 100]"), "steps[2]: 5.0 is not above"),
        (PLAN.replace("[1, 5, 25, 50, 100]", "[1, 5, 50]"), "steps[2]: the last step must be 100"),
        (PLAN.replace("[1, 5, 25, 50, 100]", "[0, 100]"), "steps[0]: Input should be greater"),
        (PLAN + "dwel_s: 5\n", "dwel_s: Extra inputs are not permitted"),
        (PLAN + "thresholds: {max_score_psi: -1}\n", "thresholds.max_score_psi: Input should"),
        (PLAN.replace('version: "2"', 'version: ""'), "candidate.version: String should"),
        (PLAN.replace("min_decisions: 500", ""), "min_decisions: Field required"),
        ("- a list", "a canary plan is a mapping"),
    ],
)
def test_a_bad_plan_is_refused_naming_the_key(text: str, message: str) -> None:
    with pytest.raises(PlanError, match=r"plan\.yaml") as e:
        parse_plan(text, "plan.yaml")
    assert message in str(e.value), str(e.value)


def test_the_cli_names_the_bad_key_and_exits_2(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(PLAN.replace("dwell_s: 600", "dwell_s: soon"))
    run = subprocess.run(
        [sys.executable, "-m", "gateway.canary.cli", "run", "--plan", str(plan),
         "--lineage", "127.0.0.1:1", "--routes-file", str(tmp_path / "routes.yaml")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 2, run.stderr
    assert "dwell_s: Input should be a valid number" in run.stderr


def _evidence(canary: ArmEvidence, primary: ArmEvidence, psi: float = 0.01) -> Evidence:
    return Evidence(0, 1, primary, canary, psi, 0.01)


HEALTHY = ArmEvidence(decisions=600, fallbacks=0, errors=0, latency_p99_ms=12.0)


def test_the_verdict_names_every_threshold_crossed() -> None:
    plan = parse_plan(PLAN, "plan.yaml")
    bad = ArmEvidence(decisions=600, fallbacks=30, errors=30, latency_p99_ms=90.0)
    verdict = judge(plan, _evidence(bad, HEALTHY, psi=0.4), dwell_over=False, holds=0)
    assert verdict is not None and verdict.kind == "rollback"
    assert "canary error rate 0.05 above max_error_rate 0.01" in verdict.reason
    assert "latency p99 increase over the primary (ms) 78 above max_latency_p99_increase_ms 50" in (
        verdict.reason
    )
    assert "score PSI against the primary 0.4 above max_score_psi 0.25" in verdict.reason


def test_promotion_waits_for_the_dwell_and_the_minimum_of_decisions() -> None:
    plan = parse_plan(PLAN, "plan.yaml")
    assert judge(plan, _evidence(HEALTHY, HEALTHY), dwell_over=False, holds=0) is None
    promoted = judge(plan, _evidence(HEALTHY, HEALTHY), dwell_over=True, holds=0)
    assert promoted is not None and promoted.kind == "promote"
    few = ArmEvidence(decisions=20, fallbacks=0, errors=20, latency_p99_ms=1.0)
    # Too few decisions to judge: no rollback on 20 errors, a hold at the dwell's end...
    assert judge(plan, _evidence(few, HEALTHY), dwell_over=False, holds=0) is None
    held = judge(plan, _evidence(few, HEALTHY), dwell_over=True, holds=0)
    assert held is not None and held.kind == "hold" and "below min_decisions 500" in held.reason
    # ... and a rollback after max_holds of them.
    out = judge(plan, _evidence(few, HEALTHY), dwell_over=True, holds=3)
    assert out is not None and out.kind == "rollback" and "after 3 holds" in out.reason


def test_comparisons_are_skipped_without_a_primary_but_absolute_limits_hold() -> None:
    plan = parse_plan(PLAN, "plan.yaml")
    none = ArmEvidence(decisions=0, fallbacks=0, errors=0, latency_p99_ms=0.0)
    ok = judge(plan, Evidence(0, 1, none, HEALTHY, math.nan, math.nan), True, 0)
    assert ok is not None and ok.kind == "promote"
    failing = ArmEvidence(decisions=600, fallbacks=600, errors=600, latency_p99_ms=1.0)
    out = judge(plan, Evidence(0, 1, none, failing, math.nan, math.nan), False, 0)
    assert out is not None and out.kind == "rollback"
