"""The demo's approval workflow: card-fraud v2 gets canary traffic only after four eyes.

On the demo's open-access store the approvers name themselves (docs/model-risk.md): the
champion v1 is approved first, by its owner and a validator; then a 10 % canary to v2 under
``approvals: enforce`` is published and refused, v2 is approved by the same two, and the
gateway applies the canary at its next poll.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import grpc
import yaml

from lineage.v1 import lineage_pb2, lineage_pb2_grpc
from loadtests.local.topology import Topology

OWNER = ("demo-model-owner", "model_owner")
VALIDATOR = ("demo-validator", "validator")
CANARY_WEIGHT = 10
WAIT_S = 30.0


class ApprovalDemoError(Exception):
    """A step of the approval workflow did not do what it should."""


def _approve(lineage: str, version: str, who: tuple[str, str]) -> None:
    from governance.cli import lineage_main

    argv = ["approve", "--model", "card-fraud", "--version", version, "--as", who[0]]
    argv += ["--role", who[1], "--comment", "demo approval", "--lineage", lineage]
    if lineage_main(argv) != 0:
        raise ApprovalDemoError(f"approving card-fraud v{version} as {who[0]} failed")


def _canary_in_force(lineage: str) -> bool:
    request = lineage_pb2.GetServingAtRequest(decision_point="card-fraud")
    request.at.GetCurrentTime()
    with grpc.insecure_channel(lineage) as channel:
        reply = lineage_pb2_grpc.LineageServiceStub(channel).GetServingAt(request, timeout=10)
    return any(
        t.arm == "canary" and t.model_version == "2" and t.weight > 0
        for t in reply.in_force.targets
    )


def _wait(what: str, check: Any) -> Any:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise ApprovalDemoError(f"timed out after {WAIT_S:g} s waiting for {what}")


def _publish(routes: Path, config: dict[str, Any]) -> None:
    tmp = routes.with_name(routes.name + ".tmp")
    tmp.write_text(yaml.safe_dump(config, sort_keys=False))
    tmp.replace(routes)


def run_approval_workflow(topology: Topology) -> None:
    lineage = topology.lineage.address
    routes = topology.workdir / "routes.yaml"
    print("\nfour eyes: card-fraud v1 (the champion) approved by its owner and a validator\n")
    _approve(lineage, "1", OWNER)
    _approve(lineage, "1", VALIDATOR)
    config = yaml.safe_load(routes.read_text())
    card = config["decision_points"]["card-fraud"]
    card["approvals"] = "enforce"
    card["canary"] = {"target": {"model": "card-fraud", "version": "2"}, "weight": CANARY_WEIGHT}
    print(f"\npublishing a {CANARY_WEIGHT} % canary to card-fraud v2 before anyone approved it ...")
    _publish(routes, config)
    refusal = _wait(
        "the gateway to refuse the unapproved canary",
        lambda: next(
            (
                line.strip()
                for line in topology.gateway.log_tail(80).splitlines()
                if "decision_points.card-fraud.canary" in line and "no valid approval" in line
            ),
            "",
        ),
    )
    print(f"refused, v1 keeps serving alone:\n  {refusal}\n")
    _approve(lineage, "2", OWNER)
    _approve(lineage, "2", VALIDATOR)
    _wait("the gateway to apply the approved canary", lambda: _canary_in_force(lineage))
    print("\napproved by two: the gateway applied the canary at its next poll\n")
    from governance.cli import lineage_main

    if lineage_main(["approvals", "--model", "card-fraud", "--version", "2", "--lineage", lineage]):
        raise ApprovalDemoError("lineage approvals failed")
