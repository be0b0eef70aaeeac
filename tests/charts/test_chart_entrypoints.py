"""The commands and arguments the chart gives each container start our real servers.

Each server is launched from exactly the rendered ``command`` + ``args``; only what cannot exist on
a laptop is remapped (listen ports to free ones, in-cluster paths to temporary ones, Service names
to the local processes). Every remapped flag must be present in the rendered args, and everything
else is passed through untouched, so a flag the entry point does not know fails the test.

The lineage store runs on the database its scenario implies: a SQLite file where the chart uses the
PVC, and where it reads a URL from a Secret, a real PostgreSQL database created for the run on the
machine's server (the test skips, saying so, only when that server is unreachable). The purge
CronJob's command and the auditor's `verify` then run against the same database.

Where the scenario is secured (security.insecureDemo false), what the cluster would mount is made
here: cert-manager's Secrets (a CA and one leaf per Certificate, with the Certificate's SPIFFE
URI), the bank IdP's JWKS, and the access-policy ConfigMap exactly as rendered. The flags that
name the mounted files are remapped to them, the gateway reaches the store over mutual TLS with
its own certificate, and every call the test makes presents the certificate of a principal the
rendered policy grants.
"""

from __future__ import annotations

import os
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from chart_support import RELEASE, Obj, Rendered, container, postgres_database
from google.protobuf import json_format, timestamp_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from kserve.protocol.grpc import grpc_predict_v2_pb2 as oip
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as oip_grpc

from governance.chain import read_checkpoints
from lineage.v1 import lineage_pb2, lineage_pb2_grpc
from loadtests.local.credentials import CertificateAuthority, Issuer, Leaf
from loadtests.local.topology import ManagedProcess, entry_point, free_port, start_process
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


Connect = Callable[[str], grpc.Channel]


def _health(connect: Connect, address: str) -> int:
    with connect(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return int(stub.Check(health_pb2.HealthCheckRequest(), timeout=5).status)


class _Mounts:
    """The Secrets and ConfigMaps a secured scenario mounts, made on disk: a CA standing in for
    the Certificates' issuer, one leaf per rendered Certificate, the IdP's JWKS, the policy."""

    def __init__(self, rendered: Rendered, root: Path) -> None:
        self.ca = CertificateAuthority("chart test CA")
        self.root = root
        self.principals = {
            cert["metadata"]["name"].removeprefix(f"{RELEASE}-"): cert["spec"]["uris"][0]
            for cert in rendered.of_kind("Certificate")
        }
        self.dirs = {c: self._secret(c) for c in ("gateway", "lineage")}
        policy = rendered.component("ConfigMap", "access-policy")["data"]["policy.yaml"]
        self.policy = root / "policy" / "policy.yaml"
        self.policy.parent.mkdir(parents=True)
        self.policy.write_text(policy)
        self.issuer = Issuer()
        self.issuer.rsa("k1")
        self.jwks = self.issuer.write_jwks(root / "jwks.json")
        self.test_client = self.ca.client((self.principals["test"],))
        # An auditor under the rendered policy's audit grant, to read back what was stored.
        grants = yaml.safe_load(policy)["lineage"]
        pattern = next(
            p for g in grants if "read_access_log" in g["permissions"] for p in g["principals"]
        )
        self.auditor = self.ca.client((pattern.replace("*", "chart-test"),))

    def _secret(self, component: str) -> Path:
        folder = self.root / f"{component}-tls"
        folder.mkdir(parents=True)
        self.ca.workload(self.principals[component]).write(folder, "tls")
        self.ca.write(folder / "ca.crt")
        return folder

    def remap(self, component: str) -> Remap:
        folder = self.dirs[component]
        remap: Remap = {
            "--tls-cert-file": lambda _: str(folder / "tls.crt"),
            "--tls-key-file": lambda _: str(folder / "tls.key"),
            "--tls-ca-file": lambda _: str(folder / "ca.crt"),
            "--access-policy": lambda _: str(self.policy),
            "--jwt-jwks-file": lambda _: str(self.jwks),
        }
        if component == "gateway":
            remap |= {
                "--lineage-tls-cert-file": lambda _: str(folder / "tls.crt"),
                "--lineage-tls-key-file": lambda _: str(folder / "tls.key"),
                "--lineage-tls-ca-file": lambda _: str(folder / "ca.crt"),
                # The in-cluster Service name is not this machine's: the leaves name localhost.
                "--lineage-tls-server-name": lambda _: "localhost",
            }
        return remap

    def connect(self, client: Leaf) -> Connect:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=self.ca.cert_pem,
            private_key=client.key_pem,
            certificate_chain=client.cert_pem,
        )
        return lambda address: grpc.secure_channel(address, credentials)


@pytest.fixture
def started() -> Iterator[list[ManagedProcess]]:
    procs: list[ManagedProcess] = []
    yield procs
    codes = {p.name: p.stop() for p in reversed(procs)}
    assert all(code == 0 for code in codes.values()), f"unclean exit: {codes}"


def _runtime_container(rendered: Rendered) -> Obj:
    runtimes = rendered.of_kind("ServingRuntime") + rendered.of_kind("ClusterServingRuntime")
    return next(c for c in runtimes[0]["spec"]["containers"] if c["name"] == "kserve-container")


def _container_env(c: Obj, values: dict[str, str]) -> dict[str, str]:
    """The container's environment with in-cluster values replaced by ``values``; a variable
    read from a Secret must be among them (the database URL, which never appears in values)."""
    env: dict[str, str] = {}
    for var in c.get("env", []):
        if "valueFrom" in var:
            assert var["name"] in values, f"{var['name']} comes from a Secret: give a local value"
        env[var["name"]] = values.get(var["name"], var.get("value", ""))
    return env


@pytest.fixture
def lineage_db(rendered: Rendered, tmp_path: Path) -> Iterator[str]:
    """The database behind the scenario's lineage store: a SQLite file where the chart uses its
    PVC, a new database on the local PostgreSQL (dropped afterwards) where it reads the URL from
    the Secret."""
    args = container(rendered, "StatefulSet", "lineage", "lineage")["args"]
    if "--db-url" in args:
        yield f"sqlite:///{tmp_path / 'lineage.db'}"
        return
    with postgres_database() as url:
        yield url


def _serving_at(connect: Connect, lineage: str, point: str) -> lineage_pb2.GetServingAtResponse:
    """What the lineage store says serves ``point`` now, once the gateway's start-up route
    change has arrived (it is sent in the background)."""
    deadline = time.monotonic() + 15
    with connect(lineage) as channel:
        stub = lineage_pb2_grpc.LineageServiceStub(channel)
        while True:
            at = timestamp_pb2.Timestamp()
            at.GetCurrentTime()
            request = lineage_pb2.GetServingAtRequest(decision_point=point, at=at)
            reply = stub.GetServingAt(request, timeout=5)
            if reply.HasField("in_force") or time.monotonic() > deadline:
                return reply
            time.sleep(0.2)


def _stored_decision(
    connect: Connect, lineage: str, decision_id: str
) -> lineage_pb2.DecisionRecord:
    """The lineage store's record of ``decision_id``, once it has arrived (the outbox's sender,
    or the span exporter, delivers it in the background)."""
    deadline = time.monotonic() + 15
    with connect(lineage) as channel:
        stub = lineage_pb2_grpc.LineageServiceStub(channel)
        request = lineage_pb2.GetDecisionRequest(decision_id=decision_id)
        while True:
            try:
                return stub.GetDecision(request, timeout=5)
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.NOT_FOUND or time.monotonic() > deadline:
                    raise
            time.sleep(0.2)


def _access_log(connect: Connect, lineage: str, principal: str) -> list[Any]:
    """The store's access-log entries for ``principal``, once its batch has been written."""
    deadline = time.monotonic() + 15
    with connect(lineage) as channel:
        stub = lineage_pb2_grpc.LineageServiceStub(channel)
        while True:
            request = lineage_pb2.ListAccessLogRequest(principal=principal, limit=100)
            entries = list(stub.ListAccessLog(request, timeout=5).entries)
            if len({e.method for e in entries}) >= 2 or time.monotonic() > deadline:
                return entries
            time.sleep(0.2)


def _run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, env={**os.environ, **env}, capture_output=True, text=True, timeout=60, check=False
    )


def test_chart_commands_start_the_real_servers(
    rendered: Rendered,
    model_dir: Path,
    tmp_path: Path,
    lineage_db: str,
    started: list[ManagedProcess],
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
    secure = any(
        o["metadata"]["name"] == f"{RELEASE}-access-policy" for o in rendered.of_kind("ConfigMap")
    )
    mounts = _Mounts(rendered, tmp_path / "mounts") if secure else None
    as_client: Connect = mounts.connect(mounts.test_client) if mounts else grpc.insecure_channel
    as_auditor: Connect = mounts.connect(mounts.auditor) if mounts else grpc.insecure_channel
    runtime = start_process("runtime", runtime_argv, tmp_path)
    started.append(runtime)
    with grpc.insecure_channel(runtime.address) as channel:
        ready = oip_grpc.GRPCInferenceServiceStub(channel).ServerReady(
            oip.ServerReadyRequest(), timeout=5
        )
    assert ready.ready

    # Lineage store: the PVC's SQLite file, or the Secret's URL, becomes a local database (real
    # PostgreSQL for the production scenario); the checkpoints PVC a temporary folder.
    lineage_c = container(rendered, "StatefulSet", "lineage", "lineage")
    checkpoints = tmp_path / "checkpoints" / "checkpoints.jsonl"
    lineage_remap: Remap = {"--host": lambda _: "127.0.0.1", "--port": lambda _: "0"}
    exports_checkpoints = "--checkpoint-file" in lineage_c["args"]
    if exports_checkpoints:
        lineage_remap["--checkpoint-file"] = lambda _: str(checkpoints)
    if "--db-url" in lineage_c["args"]:
        lineage_remap["--db-url"] = lambda _: lineage_db
    if mounts:
        lineage_remap |= mounts.remap("lineage")
    # The pseudonyms Secret (security.pseudonyms), made here with keys of its shape.
    keys = tmp_path / "pseudonyms"
    keys.mkdir()
    (keys / "telemetry.key").write_text("chart-test-telemetry-secret-0001\n")
    (keys / "entity.key").write_text("chart-test-entity-secret-000001\n")
    web = "--web-port" in lineage_c["args"]
    if web:
        lineage_remap["--web-port"] = lambda _: "0"
        lineage_remap["--web-host"] = lambda _: "127.0.0.1"
    if "--entity-key-file" in lineage_c["args"]:
        lineage_remap["--entity-key-file"] = lambda _: str(keys / "entity.key")
    lineage_env = _container_env(
        lineage_c,
        {
            "SCOREGATE_LINEAGE_DB_URL": lineage_db,
            "SCOREGATE_LINEAGE_CHECKPOINT_FILE": str(checkpoints),
        },
    )
    lineage = start_process(
        "lineage", remapped_argv(lineage_c, lineage_remap), tmp_path, env=lineage_env
    )
    started.append(lineage)
    assert _health(as_auditor, lineage.address) == health_pb2.HealthCheckResponse.SERVING
    # Serving from that database (a PostgreSQL one by its per-run name).
    assert lineage_db.rsplit("/", 1)[-1] in lineage.log_tail()

    # Gateway: the rendered routes ConfigMap (rules files beside routes.yaml), every Service
    # endpoint pointed at the local runtime.
    routes_path = rendered.write_routes(tmp_path / "routes")
    routes: dict[str, Any] = yaml.safe_load(routes_path.read_text())
    for model in routes["models"].values():
        for version in model["versions"].values():
            version["endpoints"] = [runtime.address]
    routes_path.write_text(yaml.safe_dump(routes))
    gateway_c = container(rendered, "Deployment", "gateway", "gateway")
    metrics_port = free_port()
    # With the outbox (--outbox-dir, its volume a temporary folder) the spans go to the
    # collector's tracing only, so none is exported here: the record can reach the lineage store
    # through the outbox alone. Without it, the spans carry the records to the lineage store.
    outbox = "--outbox-dir" in gateway_c["args"]
    outbox_dir = tmp_path / "outbox"
    gateway_remap: Remap = {
        "--routes": lambda _: str(routes_path),
        "--model-dir": lambda _: str(model_dir),
        "--host": lambda _: "127.0.0.1",
        "--port": lambda _: "0",
        "--otlp-endpoint": lambda _: "" if outbox else lineage.address,
        "--lineage-endpoint": lambda _: lineage.address,
        "--metrics-port": lambda _: str(metrics_port),
    }
    if outbox:
        gateway_remap["--outbox-dir"] = lambda _: str(outbox_dir)
    if mounts:
        gateway_remap |= mounts.remap("gateway")
    if "--telemetry-key-file" in gateway_c["args"]:
        gateway_remap["--telemetry-key-file"] = lambda _: str(keys / "telemetry.key")
    gateway_argv = remapped_argv(gateway_c, gateway_remap)
    gateway = start_process("gateway", gateway_argv, tmp_path)
    started.append(gateway)
    assert _health(as_client, gateway.address) == health_pb2.HealthCheckResponse.SERVING

    # The request `helm test` sends gets a real decision.
    request = json_format.Parse(helm_test_payload(rendered), scoring_pb2.ScoreRequest())
    with as_client(gateway.address) as channel:
        answer = scoring_pb2_grpc.ScoringServiceStub(channel).Score(request, timeout=10)
    assert answer.decision in {"approve", "review", "decline"}
    assert answer.model_name == request.decision_point
    assert answer.decision_id

    # The port the ServiceMonitor scrapes serves Prometheus text, this decision counted.
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as reply:
        exposition = reply.read().decode()
    assert "scoregate" in exposition
    if outbox:
        # Answered only once durable: the record was appended to the outbox on the volume.
        assert any(outbox_dir.glob("*.seg")), sorted(p.name for p in outbox_dir.iterdir())
        assert "scoregate_outbox_appends_total 1.0" in exposition

    # The decision itself reached the lineage store (the outbox's sender, or the spans).
    stored = _stored_decision(as_auditor, lineage.address, answer.decision_id)
    assert stored.decision_id == answer.decision_id
    assert stored.request_id == request.request_id
    # Where the values pseudonymise the decision point, the raw entity key is not stored.
    args = lineage_c["args"]
    pseudonymised = "--pseudonymise-entities" in args and request.decision_point in args[
        args.index("--pseudonymise-entities") + 1
    ].split(",")
    assert (stored.entity_key != request.entity_key) == pseudonymised, stored.entity_key
    by_entity = lineage_pb2.ListDecisionsRequest(entity_key=request.entity_key)
    with as_auditor(lineage.address) as channel:
        stub = lineage_pb2_grpc.LineageServiceStub(channel)
        if mounts:
            # A search by a customer's key is personal data: the audit grant lacks it.
            with pytest.raises(grpc.RpcError) as refused:
                stub.ListDecisions(by_entity, timeout=5)
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "read_features" in str(refused.value.details())
        else:
            found = stub.ListDecisions(by_entity, timeout=5)
            assert answer.decision_id in {d.decision_id for d in found.decisions}
    assert (stored.model.name, stored.model.version) == (answer.model_name, answer.model_version)

    if web:
        _check_risk_page(str(lineage.info["web"]), answer.decision_id, mounts)

    # The gateway recorded the routing it started with in the lineage store (--lineage-endpoint).
    serving = _serving_at(as_auditor, lineage.address, request.decision_point)
    assert serving.HasField("in_force"), "no route change reached the lineage store"
    assert serving.in_force.config_version
    arms = {(t.arm, t.model_name, t.model_version) for t in serving.targets}
    assert ("primary", answer.model_name, answer.model_version) in arms, arms
    # ...including its rules fallback, by rules name and the version in the rendered file.
    last_step = routes["decision_points"][request.decision_point]["fallback"]["chain"][-1]
    rules_file = rendered.routes_files()[routes["rules"][last_step["rules"]]["file"]]
    assert ("fallback", last_step["rules"], yaml.safe_load(rules_file)["version"]) in arms, arms

    if mounts:
        # The helm test's principal is the one recorded, and the gateway wrote to the store as
        # its certificate's principal, under the grant the chart adds for it.
        assert stored.principal == mounts.principals["test"]
        assert stored.principal_verified_by == "mtls"
        written = _access_log(as_auditor, lineage.address, mounts.principals["gateway"])
        # (Accepted Exports are not logged: the records are chained themselves.)
        seen = {(e.method, e.outcome, e.detail) for e in written}
        assert {(m, o) for m, o, _ in seen} == {
            ("RegisterManifest", "OK"),
            ("RecordRouteChange", "OK"),
        }, seen
        assert {e.verified_by for e in written} == {"mtls"}, seen

    # Stopped in order, the lineage store leaves its last checkpoint in the checkpoints folder.
    assert gateway.stop() == 0 and lineage.stop() == 0
    assert not exports_checkpoints or read_checkpoints(checkpoints), "no checkpoint exported"

    # The purge CronJob's command (PostgreSQL scenarios) against the same database.
    for cronjob in rendered.of_kind("CronJob"):
        pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        (purge_c,) = pod["containers"]
        purged = _run(
            remapped_argv(purge_c, {}),
            _container_env(purge_c, {"SCOREGATE_LINEAGE_DB_URL": lineage_db}),
        )
        assert purged.returncode == 0, purged.stderr
        assert "recorded as" in purged.stdout, purged.stdout

    # What an auditor runs in the lineage container: the store matches its chain and checkpoints.
    verified = _run(
        [*entry_point("scoregate"), "lineage", "verify"],
        lineage_env | {"SCOREGATE_LINEAGE_DB_URL": lineage_db},
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "OK: the store matches its hash chain" in verified.stdout
    assert exports_checkpoints == ("and checkpoints" in verified.stdout), verified.stdout


def _check_risk_page(url: str, decision_id: str, mounts: _Mounts | None) -> None:
    """The page serves the decision: over HTTPS to a client certificate the policy grants when
    secured (and refuses a connection without one), over HTTP otherwise."""
    page = f"{url.rstrip('/')}/decisions/{decision_id}"
    if mounts is None:
        assert url.startswith("http://"), url
        with urllib.request.urlopen(page, timeout=10) as reply:
            assert decision_id in reply.read().decode()
        return
    assert url.startswith("https://"), url
    folder = mounts.root / "auditor"
    folder.mkdir(exist_ok=True)
    cert, key = mounts.auditor.write(folder, "auditor")
    ca = mounts.ca.write(folder / "ca.crt")
    context = ssl.create_default_context(cafile=str(ca))
    with pytest.raises((urllib.error.URLError, ssl.SSLError, ConnectionError)):
        urllib.request.urlopen(page, timeout=10, context=context)
    context.load_cert_chain(cert, key)
    with urllib.request.urlopen(page, timeout=10, context=context) as reply:
        assert decision_id in reply.read().decode()


def helm_test_payload(rendered: Rendered) -> str:
    """The JSON the helm test Pod hands grpcurl (``-d``)."""
    pod = rendered.of_kind("Pod")[0]
    args = next(c for c in pod["spec"]["containers"] if c["name"] == "score")["args"]
    return str(args[args.index("-d") + 1])
