"""The ConfigMap path of ``scoregate canary run``: the routes ConfigMap patched through the
real ``kubernetes`` client against a fake API server (no cluster runs here), with the patched
content exactly what the gateway reloads from a file, and a 409 Conflict retried."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import yaml
from support.fake_kubernetes_api import FakeKubernetesApi

from gateway.canary.appliers import ConfigMapRoutes, FileRoutes, kubernetes_api
from gateway.canary.errors import RoutesError
from gateway.canary.lineage import LineageCanaryClient, canary_weight_in_force
from gateway.canary.plan import Candidate
from gateway.canary.weights import with_canary_weight
from loadtests.local.topology import Topology

NS, NAME = "scoring", "scoregate-gateway"
V2 = Candidate(model="card-fraud", version="2")


@pytest.fixture
def fake_api() -> Iterator[FakeKubernetesApi]:
    api = FakeKubernetesApi().start()
    try:
        yield api
    finally:
        api.stop()


def _edit(weight: float) -> object:
    return lambda text: with_canary_weight(text, "card-fraud", V2, weight)


async def test_the_patch_is_the_file_the_gateway_reloads_and_it_takes_it(
    fake_api: FakeKubernetesApi, topology: Topology, tmp_path: Path
) -> None:
    routes_file = topology.workdir / "routes.yaml"
    original = routes_file.read_text()
    fake_api.put(NS, NAME, {"routes.yaml": original, "card-fraud-rules.yaml": "kept"})
    configmap = ConfigMapRoutes(kubernetes_api(fake_api.url), NS, NAME)

    patched = await configmap.update(lambda t: with_canary_weight(t, "card-fraud", V2, 25))

    # Byte for byte what the same edit writes to a local routes file.
    local = tmp_path / "routes.yaml"
    local.write_text(original)
    written = await FileRoutes(local).update(lambda t: with_canary_weight(t, "card-fraud", V2, 25))
    assert fake_api.configmaps[(NS, NAME)]["routes.yaml"] == patched == written
    assert local.read_text() == written
    # Only the routes key is patched; the rules file beside it stays.
    assert fake_api.configmaps[(NS, NAME)]["card-fraud-rules.yaml"] == "kept"
    assert yaml.safe_load(patched)["decision_points"]["card-fraud"]["canary"] == {
        "target": {"model": "card-fraud", "version": "2"},
        "weight": 25,
    }

    # What the kubelet would put in the pods' mounted file: a real gateway reloads it.
    routes_file.write_text(fake_api.configmaps[(NS, NAME)]["routes.yaml"])
    lineage = LineageCanaryClient(
        topology.lineage.address, grpc.aio.insecure_channel(topology.lineage.address)
    )
    try:
        for _ in range(100):
            change = await lineage.in_force("card-fraud", time.time_ns() // 1000)
            if canary_weight_in_force(change, "card-fraud") == 25:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"the gateway did not take the patched routes: {change}")
    finally:
        routes_file.write_text(original)
        await lineage.close()


async def test_a_conflicting_write_is_retried_on_the_fresh_content(
    fake_api: FakeKubernetesApi, topology: Topology
) -> None:
    original = (topology.workdir / "routes.yaml").read_text()
    fake_api.put(NS, NAME, {"routes.yaml": original})
    fake_api.concurrent_edits = 1
    configmap = ConfigMapRoutes(kubernetes_api(fake_api.url), NS, NAME)

    patched = await configmap.update(lambda t: with_canary_weight(t, "card-fraud", V2, 5))

    assert fake_api.conflicts == 1
    assert len(fake_api.patches) == 2
    # The retry carried the version it read after the conflict, and was accepted.
    versions = [p["metadata"]["resourceVersion"] for p in fake_api.patches]
    assert versions[0] != versions[1]
    assert fake_api.configmaps[(NS, NAME)]["routes.yaml"] == patched
    # The other writer's change is kept, not overwritten.
    assert fake_api.configmaps[(NS, NAME)]["edited-by"] == "someone else"


async def test_a_configmap_that_keeps_changing_is_not_patched_blindly(
    fake_api: FakeKubernetesApi, topology: Topology
) -> None:
    original = (topology.workdir / "routes.yaml").read_text()
    fake_api.put(NS, NAME, {"routes.yaml": original})
    fake_api.concurrent_edits = 100
    configmap = ConfigMapRoutes(kubernetes_api(fake_api.url), NS, NAME)
    with pytest.raises(RoutesError, match="409 Conflict"):
        await configmap.update(lambda t: with_canary_weight(t, "card-fraud", V2, 5))
    assert fake_api.configmaps[(NS, NAME)]["routes.yaml"] == original
