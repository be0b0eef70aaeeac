"""Each Locust scenario runs headless against the real local topology and writes its reports."""

from __future__ import annotations

import pytest
from load_support import LoadRunner

from loadtests.local.topology import Topology

# Short stages: a shape's whole run takes a few seconds here.
SHORT = {
    "steady": ("-u", "3", "-t", "4s"),
    "canary": ("-u", "3", "-t", "3s"),
    "step_ramp": ("--", "--step-users", "1", "--step-seconds", "1.5", "--step-peak", "3"),
    "spike": ("--", "--spike-users", "1", "--spike-seconds", "1.5", "--spike-peak", "4"),
}


@pytest.mark.parametrize("scenario", sorted(SHORT))
def test_scenario_runs_headless_and_writes_its_reports(
    scenario: str, topology: Topology, run_scenario: LoadRunner
) -> None:
    args = SHORT[scenario]
    cut = args.index("--") if "--" in args else len(args)
    run = run_scenario(
        scenario, topology.gateway.address, *args[:cut], "--p99-ms", "5000", locust=args[cut + 1 :]
    )
    assert run.code == 0, run.output
    summary = run.summary
    assert summary["requests"] > 0
    assert summary["failures"] == 0, run.output
    assert summary["arms"].get("primary", 0) == summary["requests"]
    assert (run.out / f"{scenario}_stats.csv").read_text().count("card-fraud/primary") == 1
    assert "card-fraud/primary" in (run.out / f"{scenario}.html").read_text()


def test_canary_without_a_configured_weight_reports_and_skips_the_bound(
    topology: Topology, run_scenario: LoadRunner
) -> None:
    run = run_scenario("canary", topology.gateway.address, "-u", "2", "-t", "2s")
    check = next(c for c in run.summary["checks"] if c["name"] == "canary share")
    assert check["ok"] is None and "no canary" in check["detail"]
    assert run.code == 0, run.output


def test_an_impossible_p99_threshold_fails_the_run(
    topology: Topology, run_scenario: LoadRunner
) -> None:
    run = run_scenario(
        "steady", topology.gateway.address, "-u", "2", "-t", "2s", "--p99-ms", "0.001"
    )
    assert run.code == 1
    p99 = next(c for c in run.summary["checks"] if c["name"] == "p99")
    assert p99["ok"] is False
    assert run.summary["passed"] is False


@pytest.mark.parametrize("form", ["columns", "rows"])
def test_the_batch_scenario_scores_every_row_and_reports_rows_per_second(
    form: str, topology: Topology, run_scenario: LoadRunner
) -> None:
    run = run_scenario(
        "batch", topology.gateway.address, "-u", "2", "-t", "3s", "--p99-ms", "5000",
        locust=("--batch-rows", "50", "--batch-form", form),
    )  # fmt: skip
    assert run.code == 0, run.output
    summary = run.summary
    assert summary["requests"] > 0 and summary["failures"] == 0, run.output
    assert summary["arms"] == {"batch": summary["requests"]}
    rows = next(c for c in summary["checks"] if c["name"] == "rows scored")
    assert f"{summary['requests'] * 50:,} rows in" in rows["detail"]
    assert f"({form} form)" in rows["detail"]
    stats = (run.out / "batch_stats.csv").read_text()
    assert "ScoreBatch,card-fraud/batch" in stats
