"""The fallback scenario kills the runtime mid-run; every call must still get an answer.

Its own module and topology: the gateway's routes give each decision point a fallback chain
(the model's other version, then the demo rules file), and the runtime it kills serves no other
test.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from load_support import LoadRunner

from loadtests.local.routes import with_fallback
from loadtests.local.topology import Topology


@pytest.fixture(scope="module")
def fallback_topology(
    model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Topology]:
    topo = Topology(tmp_path_factory.mktemp("fallback"), model_dir, routes=with_fallback)
    topo.start()
    try:
        yield topo
    finally:
        topo.stop()


def test_the_local_routes_end_in_the_rules_scorer(fallback_topology: Topology) -> None:
    routes = yaml.safe_load((fallback_topology.workdir / "routes.yaml").read_text())
    chain = routes["decision_points"]["card-fraud"]["fallback"]["chain"]
    assert chain == [{"model": "card-fraud", "version": "2"}, {"rules": "card-fraud-rules"}]


def test_fallback_answers_every_call_with_the_runtime_killed(
    fallback_topology: Topology, run_scenario: LoadRunner
) -> None:
    runtime = fallback_topology.runtime.popen
    run = run_scenario(
        "fallback",
        fallback_topology.gateway.address,
        "-u", "3", "-t", "5s", "--fault-at", "1.5", "--fault-command", f"kill -KILL {runtime.pid}",
    )  # fmt: skip
    try:
        code = runtime.wait(15)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the fault did not kill the runtime:\n{run.output}")
    assert code == -9, code
    summary = run.summary
    assert run.code == 0, run.output
    assert summary["failures"] == 0, run.output
    # Answers before the fault came from the primary, after it from the rules scorer.
    assert summary["arms"].get("primary", 0) > 0, summary
    assert summary["arm_share"].get("fallback", 0) > 0, summary
    check = next(c for c in summary["checks"] if c["name"] == "fallback share")
    assert check["detail"].startswith(f"{summary['arms']['fallback']}/"), check
