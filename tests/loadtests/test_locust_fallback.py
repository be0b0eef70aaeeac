"""The fallback scenario stops the runtime mid-run; every call must still get an answer.

Its own module, so the runtime it stops belongs to a topology no other test uses.
"""

from __future__ import annotations

import pytest
from load_support import LoadRunner

from gateway.topology import Topology


def test_fallback_answers_every_call_with_the_runtime_stopped(
    topology: Topology, run_scenario: LoadRunner
) -> None:
    fault = f"kill -TERM {topology.runtime.popen.pid}"
    run = run_scenario(
        "fallback",
        topology.gateway.address,
        "-u", "3", "-t", "5s", "--fault-at", "1.5", "--fault-command", fault,
    )  # fmt: skip
    assert topology.runtime.popen.wait(15) is not None, "the fault did not stop the runtime"
    summary = run.summary
    if summary["arms"].get("fallback", 0) == 0:
        pytest.skip(
            "no response came with arm == 'fallback' after the runtime stopped: the gateway has "
            "no fallback chain yet (traffic-management issue); "
            f"{summary['failures']}/{summary['requests']} calls failed"
        )
    assert summary["failures"] == 0, run.output
    assert run.code == 0, run.output
