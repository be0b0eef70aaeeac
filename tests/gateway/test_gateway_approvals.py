"""The gateway enforcing four-eyes approvals from the lineage store, on real processes (the demo
runtime, a lineage store, a gateway polling its routes file): a reload giving card-fraud v2
traffic without approvals is refused and the old config keeps serving; after two distinct
approvers it is accepted; a revocation makes the next reload refuse it; ``warn`` accepts and
records the unapproved arm; a store that cannot be read fails closed, or open when set so.

The store runs with open access, so approvers are named by the request (docs/model-risk.md);
tests/governance/test_approvals_store.py covers approvals under an access policy.
"""

from __future__ import annotations

import copy
import os
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from support.waiting import wait_until

from lineage.v1 import lineage_pb2, lineage_pb2_grpc
from loadtests.local.topology import (
    ManagedProcess,
    TopologyError,
    free_port,
    start_gateway,
    start_lineage,
)
from runtimes.manifest import MANIFEST_FILE, Manifest, find_model_folders
from runtimes.training.datasets import sample_requests
from scoring.v1 import scoring_pb2_grpc
from scoring.v1.requests import score_request

Config = dict[str, Any]
RELOAD_INTERVAL_S = 0.2
# Generous: two cores shared with other test runs.
WAIT_S = 20.0


@dataclass
class Deployment:
    store: ManagedProcess
    gateway: ManagedProcess
    routes: Path

    def publish(self, config: Config) -> None:
        tmp = self.routes.with_name("routes.yaml.tmp")
        tmp.write_text(yaml.safe_dump(config, sort_keys=False))
        os.replace(tmp, self.routes)

    def arms(self, n: int = 12) -> set[tuple[str, str]]:
        with grpc.insecure_channel(self.gateway.address) as channel:
            stub = scoring_pb2_grpc.ScoringServiceStub(channel)
            features = sample_requests("card-fraud", 1, seed=3)[0]
            replies = [
                stub.Score(score_request(f"r-{i}", "card-fraud", f"e-{i}", features), timeout=10)
                for i in range(n)
            ]
        return {(r.arm, r.model_version) for r in replies}

    def metric(self, prefix: str) -> float:
        url = f"http://{self.gateway.info['metrics']}/metrics"
        with urllib.request.urlopen(url, timeout=5) as r:
            text = r.read().decode()
        return sum(float(x.rsplit(" ", 1)[1]) for x in text.splitlines() if x.startswith(prefix))

    def failed_reloads(self) -> float:
        return self.metric('scoregate_gateway_config_reloads_total{result="failed"}')

    def ok_reloads(self) -> float:
        return self.metric('scoregate_gateway_config_reloads_total{result="ok"}')


def _stub(store: ManagedProcess) -> lineage_pb2_grpc.LineageServiceStub:
    return lineage_pb2_grpc.LineageServiceStub(grpc.insecure_channel(store.address))


def register_all(store: ManagedProcess, model_dir: Path) -> None:
    stub = _stub(store)
    for folder in find_model_folders(model_dir):
        text = (folder / MANIFEST_FILE).read_text()
        stub.RegisterManifest(lineage_pb2.RegisterManifestRequest(manifest_json=text), timeout=10)


def approve(store: ManagedProcess, version: str, who: str, role: str) -> None:
    request = lineage_pb2.RecordApprovalRequest(
        model=lineage_pb2.ModelVersionRef(model_name="card-fraud", model_version=version),
        evidence=lineage_pb2.ValidationEvidence(report_sha256="c" * 64, report_uri="mem://report"),
        principal=who,
        roles=[role],
    )
    _stub(store).RecordApproval(request, timeout=10)


def revoke(store: ManagedProcess, version: str) -> None:
    request = lineage_pb2.RevokeApprovalRequest(
        model=lineage_pb2.ModelVersionRef(model_name="card-fraud", model_version=version),
        reason="validation finding",
        principal="mrm.lead",
    )
    _stub(store).RevokeApproval(request, timeout=10)


def card_fraud_only(config: Config, canary: float | None = None, **point: Any) -> Config:
    out = copy.deepcopy(config)
    card = out["decision_points"]["card-fraud"]
    card.update(point)
    if canary is not None:
        card["canary"] = {"target": {"model": "card-fraud", "version": "2"}, "weight": canary}
    out["decision_points"] = {"card-fraud": card}
    return out


@pytest.fixture
def deploy(
    runtime: ManagedProcess,
    model_dir: Path,
    demo_config: Callable[[str], Config],
    tmp_path: Path,
) -> Iterator[Callable[..., Deployment]]:
    """Starts a store with every demo manifest registered and card-fraud v1 approved, then a
    gateway checking approvals against it; both stopped at the end."""
    started: list[ManagedProcess] = []

    def make(*gateway_args: str) -> Deployment:
        store = start_lineage(tmp_path / "lineage.db", tmp_path, name="lineage")
        started.append(store)
        register_all(store, model_dir)
        approve(store, "1", "m.owner", "model_owner")
        approve(store, "1", "v.validator", "validator")
        routes = tmp_path / "routes.yaml"
        routes.write_text(yaml.safe_dump(card_fraud_only(demo_config(runtime.address))))
        gateway = start_gateway(
            routes,
            model_dir,
            tmp_path,
            lineage_endpoint=store.address,
            extra_args=[
                "--approvals", "enforce",
                "--reload-interval-s", str(RELOAD_INTERVAL_S),
                "--metrics-port", str(free_port()),
                *gateway_args,
            ],
        )  # fmt: skip
        started.append(gateway)
        return Deployment(store, gateway, routes)

    yield make
    for proc in reversed(started):
        proc.stop()


def test_refused_until_two_approvers_then_revocation_refuses_the_next_reload(
    deploy: Callable[..., Deployment], demo_config: Callable[[str], Config], runtime: ManagedProcess
) -> None:
    d = deploy()
    base = demo_config(runtime.address)
    assert d.arms() == {("primary", "1")}

    d.publish(card_fraud_only(base, canary=100))
    wait_until(d.failed_reloads, WAIT_S, "v2 traffic refused", until=lambda n: n >= 1)
    log = d.gateway.log_tail(80)
    assert "decision_points.card-fraud.canary: card-fraud version 2 (artifact" in log
    assert "has no valid approval: 0 of 2 approvals" in log
    assert d.arms() == {("primary", "1")}, "the old config keeps serving"

    approve(d.store, "2", "m.owner", "model_owner")
    approve(d.store, "2", "m.owner", "model_owner")  # the same approver twice counts once
    # Checked again at every poll while refused: give it a few, it must still refuse.
    ok = d.ok_reloads()
    wait_until(lambda: "1 of 2 approvals (m.owner)" in d.gateway.log_tail(200), WAIT_S, "recheck")
    assert d.ok_reloads() == ok and d.arms() == {("primary", "1")}

    approve(d.store, "2", "v.validator", "validator")
    wait_until(d.arms, WAIT_S, "v2 taking all traffic", until=lambda a: a == {("canary", "2")})

    revoke(d.store, "2")
    assert d.arms() == {("canary", "2")}, "a revocation alone reloads nothing"
    failed = d.failed_reloads()
    d.publish(card_fraud_only(base, canary=50))
    wait_until(d.failed_reloads, WAIT_S, "the next reload refused", until=lambda n: n > failed)
    assert d.arms() == {("canary", "2")}, "the config before the revocation keeps serving"


def test_warn_accepts_and_records_the_unapproved_arm(
    deploy: Callable[..., Deployment],
    demo_config: Callable[[str], Config],
    runtime: ManagedProcess,
    manifests: dict[tuple[str, str], Manifest],
) -> None:
    d = deploy()
    d.publish(card_fraud_only(demo_config(runtime.address), canary=100, approvals="warn"))
    wait_until(d.arms, WAIT_S, "v2 serving under warn", until=lambda a: a == {("canary", "2")})
    assert d.metric("scoregate_gateway_unapproved_arms ") == 1
    assert "routing to an unapproved model version (approvals: warn)" in d.gateway.log_tail(80)

    def in_force() -> lineage_pb2.RouteChange:
        request = lineage_pb2.GetServingAtRequest(decision_point="card-fraud")
        request.at.GetCurrentTime()
        return _stub(d.store).GetServingAt(request, timeout=10).in_force

    change = wait_until(in_force, WAIT_S, "the route change stored", until=lambda c: c.unapproved)
    sha = manifests[("card-fraud", "2")].artifact_sha256
    assert list(change.unapproved) == [
        f"decision_points.card-fraud.canary: card-fraud version 2 (artifact {sha[:12]}) "
        "has no valid approval: 0 of 2 approvals"
    ]


def test_a_shadow_of_an_unapproved_version_is_allowed(
    deploy: Callable[..., Deployment], demo_config: Callable[[str], Config], runtime: ManagedProcess
) -> None:
    d = deploy()
    shadow = [{"target": {"model": "card-fraud", "version": "2"}, "percent": 100}]
    d.publish(card_fraud_only(demo_config(runtime.address), shadows=shadow))
    wait_until(d.ok_reloads, WAIT_S, "the shadow config applied", until=lambda n: n >= 1)
    assert d.failed_reloads() == 0


def test_store_unreachable_fails_closed_but_cached_answers_stand_in(
    deploy: Callable[..., Deployment], demo_config: Callable[[str], Config], runtime: ManagedProcess
) -> None:
    d = deploy()
    base = demo_config(runtime.address)
    assert d.store.stop() == 0
    # v1's approval was read at start-up: a change routing only to v1 is still accepted.
    d.publish(card_fraud_only(base, timeout_ms=300))
    wait_until(d.ok_reloads, WAIT_S, "a v1-only change applied", until=lambda n: n >= 1)
    d.publish(card_fraud_only(base, canary=100))
    wait_until(d.failed_reloads, WAIT_S, "v2 refused", until=lambda n: n >= 1)
    assert "cannot read model approvals" in d.gateway.log_tail(80)
    assert "refused (fail closed" in d.gateway.log_tail(80)
    assert d.arms() == {("primary", "1")}


def test_store_unreachable_fail_open_accepts_with_a_warning(
    deploy: Callable[..., Deployment], demo_config: Callable[[str], Config], runtime: ManagedProcess
) -> None:
    d = deploy("--approvals-fail-open", "true")
    assert d.store.stop() == 0
    d.publish(card_fraud_only(demo_config(runtime.address), canary=100))
    wait_until(d.arms, WAIT_S, "v2 serving (fail open)", until=lambda a: a == {("canary", "2")})
    assert "accepted without them (fail open)" in d.gateway.log_tail(80)
    assert d.metric("scoregate_gateway_unapproved_arms ") == 1


def test_a_gateway_refuses_to_start_on_unapproved_routes(
    runtime: ManagedProcess, model_dir: Path, demo_config: Callable[[str], Config], tmp_path: Path
) -> None:
    store = start_lineage(tmp_path / "lineage.db", tmp_path, name="lineage")
    try:
        register_all(store, model_dir)
        routes = tmp_path / "routes.yaml"
        routes.write_text(yaml.safe_dump(card_fraud_only(demo_config(runtime.address))))
        with pytest.raises(TopologyError) as refused:
            start_gateway(
                routes,
                model_dir,
                tmp_path,
                lineage_endpoint=store.address,
                extra_args=["--approvals", "enforce"],
            )
        assert "exited with code 2" in str(refused.value)
        assert "decision_points.card-fraud.primary: card-fraud version 1" in str(refused.value)
    finally:
        store.stop()
