"""The canary scenario against a gateway whose routes split card-fraud 75/25 between versions.

Its own module and topology, so the canary is in no other test's routes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from load_support import LoadRunner

from loadtests.checks import binomial_bound
from loadtests.local.routes import with_canary
from loadtests.local.topology import Topology

WEIGHT = 0.25


@pytest.fixture(scope="module")
def canary_topology(
    model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Topology]:
    topo = Topology(tmp_path_factory.mktemp("canary"), model_dir, routes=with_canary(WEIGHT))
    topo.start()
    try:
        yield topo
    finally:
        topo.stop()


def test_canary_share_is_within_the_binomial_bound(
    canary_topology: Topology, run_scenario: LoadRunner
) -> None:
    run = run_scenario(
        "canary", canary_topology.gateway.address, "-u", "3", "-t", "4s",
        "--canary-weight", str(WEIGHT),
    )  # fmt: skip
    assert run.code == 0, run.output
    summary = run.summary
    assert summary["failures"] == 0, run.output
    answered = sum(summary["arms"].values())
    assert set(summary["arms"]) == {"primary", "canary"}, summary
    assert answered > 100, summary
    share = summary["arm_share"]["canary"]
    assert abs(share - WEIGHT) <= binomial_bound(WEIGHT, answered, 4.0), summary
    check = next(c for c in summary["checks"] if c["name"] == "canary share")
    assert check["ok"] is True, check


def test_a_wrong_expected_weight_fails_the_run(
    canary_topology: Topology, run_scenario: LoadRunner
) -> None:
    """The bound has teeth: the same split, checked against 50%, fails the run."""
    run = run_scenario(
        "canary", canary_topology.gateway.address, "-u", "2", "-t", "3s", "--canary-weight", "0.5"
    )
    check = next(c for c in run.summary["checks"] if c["name"] == "canary share")
    assert check["ok"] is False, check
    assert run.code == 1, run.output
