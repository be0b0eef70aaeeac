"""The commands and arguments the chart gives each container start our real servers.

Each server is launched from exactly the rendered ``command`` + ``args``; only what cannot exist on
a laptop is remapped (listen ports to free ones, in-cluster paths to temporary ones, Service names
to the local processes). Every remapped flag must be present in the rendered args, and everything
else is passed through untouched, so a flag the entry point does not know fails the test.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from chart_support import Obj, Rendered, container
from google.protobuf import json_format
from grpc_health.v1 import health_pb2, health_pb2_grpc
from kserve.protocol.grpc import grpc_predict_v2_pb2 as oip
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as oip_grpc

from gateway.topology import ManagedProcess, entry_point, free_port, start_process
from scoring.v1 import scoring_pb2, scoring_pb2_grpc

Remap = dict[str, Callable[[str], str]]


def remapped_argv(c: Obj, remap: Remap) -> list[str]:
    """``command + args``, the ``remap`` flags' values replaced; each of them must occur."""
    command = c["command"]
    assert len(command) == 1, command
    args = [str(a) for a in c["args"]]
    out = [*entry_point(command[0])]
    seen: set[str] = set()
    i = 0
    while i < len(args):
        flag = args[i]
        out.append(flag)
        if flag in remap:
            out.append(remap[flag](args[i + 1]))
            seen.add(flag)
            i += 2
            continue
        i += 1
    missing = set(remap) - seen
    assert not missing, f"{command[0]}: rendered args lack {sorted(missing)}"
    return out


def _health(address: str) -> int:
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return int(stub.Check(health_pb2.HealthCheckRequest(), timeout=5).status)


@pytest.fixture
def started() -> Iterator[list[ManagedProcess]]:
    procs: list[ManagedProcess] = []
    yield procs
    codes = {p.name: p.stop() for p in reversed(procs)}
    assert all(code == 0 for code in codes.values()), f"unclean exit: {codes}"


def _runtime_container(rendered: Rendered) -> Obj:
    runtimes = rendered.of_kind("ServingRuntime") + rendered.of_kind("ClusterServingRuntime")
    return next(c for c in runtimes[0]["spec"]["containers"] if c["name"] == "kserve-container")


def _lineage_env(c: Obj, db_url: str) -> dict[str, str]:
    """The Secret-backed database URL, stood in for by a local SQLite file."""
    env: dict[str, str] = {}
    for var in c.get("env", []):
        if "valueFrom" in var:
            assert var["name"] == "SCOREGATE_LINEAGE_DB_URL", var
            env[var["name"]] = db_url
        else:
            env[var["name"]] = var["value"]
    return env


def test_chart_commands_start_the_real_servers(
    rendered: Rendered, model_dir: Path, tmp_path: Path, started: list[ManagedProcess]
) -> None:
    # Runtime: the whole demo repository in one process stands in for one pod per version.
    runtime_argv = remapped_argv(
        _runtime_container(rendered),
        {
            "--model-dir": lambda _: str(model_dir),
            "--host": lambda _: "127.0.0.1",
            "--grpc-port": lambda _: str(free_port()),
            "--http-port": lambda _: str(free_port()),
        },
    )
    runtime = start_process("runtime", runtime_argv, tmp_path)
    started.append(runtime)
    with grpc.insecure_channel(runtime.address) as channel:
        ready = oip_grpc.GRPCInferenceServiceStub(channel).ServerReady(
            oip.ServerReadyRequest(), timeout=5
        )
    assert ready.ready

    # Lineage store: the PVC path (or the Secret's URL) becomes a temporary SQLite file.
    lineage_c = container(rendered, "StatefulSet", "lineage", "lineage")
    db_url = f"sqlite:///{tmp_path / 'lineage.db'}"
    lineage_remap: Remap = {"--host": lambda _: "127.0.0.1", "--port": lambda _: "0"}
    if "--db-url" in lineage_c["args"]:
        lineage_remap["--db-url"] = lambda _: db_url
    lineage = start_process(
        "lineage",
        remapped_argv(lineage_c, lineage_remap),
        tmp_path,
        env=_lineage_env(lineage_c, db_url),
    )
    started.append(lineage)
    assert _health(lineage.address) == health_pb2.HealthCheckResponse.SERVING

    # Gateway: the rendered routes, every Service endpoint pointed at the local runtime.
    routes: dict[str, Any] = yaml.safe_load(rendered.routes_yaml())
    for model in routes["models"].values():
        for version in model["versions"].values():
            version["endpoints"] = [runtime.address]
    routes_path = tmp_path / "routes.yaml"
    routes_path.write_text(yaml.safe_dump(routes))
    gateway_c = container(rendered, "Deployment", "gateway", "gateway")
    metrics_port = free_port()
    gateway_argv = remapped_argv(
        gateway_c,
        {
            "--routes": lambda _: str(routes_path),
            "--model-dir": lambda _: str(model_dir),
            "--host": lambda _: "127.0.0.1",
            "--port": lambda _: "0",
            "--otlp-endpoint": lambda _: lineage.address,
            "--metrics-port": lambda _: str(metrics_port),
        },
    )
    gateway = start_process("gateway", gateway_argv, tmp_path)
    started.append(gateway)
    assert _health(gateway.address) == health_pb2.HealthCheckResponse.SERVING

    # The request `helm test` sends gets a real decision.
    request = json_format.Parse(helm_test_payload(rendered), scoring_pb2.ScoreRequest())
    with grpc.insecure_channel(gateway.address) as channel:
        answer = scoring_pb2_grpc.ScoringServiceStub(channel).Score(request, timeout=10)
    assert answer.decision in {"approve", "review", "decline"}
    assert answer.model_name == request.decision_point
    assert answer.decision_id

    # The port the ServiceMonitor scrapes serves Prometheus text, this decision counted.
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as reply:
        assert "scoregate" in reply.read().decode()


def helm_test_payload(rendered: Rendered) -> str:
    """The JSON the helm test Pod hands grpcurl (``-d``)."""
    pod = rendered.of_kind("Pod")[0]
    args = next(c for c in pod["spec"]["containers"] if c["name"] == "score")["args"]
    return str(args[args.index("-d") + 1])
