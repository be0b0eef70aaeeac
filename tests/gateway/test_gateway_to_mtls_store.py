"""A real gateway delivering to a real lineage store that requires client certificates.

The store runs with ``--tls-client-certificate required`` and an access policy; the gateway
reaches it with its own certificate (``--lineage-tls-*``), through its outbox. What the store
saw is read from its access log, which names the principal of every route change and every
refused export (accepted exports are not logged: the records are chained themselves). Shown:

- a gateway whose principal lacks ``ingest`` is refused, its decisions stay in its outbox, and
  they all arrive once the policy grants it (hot reload, no restart of either process); its
  refused start-up route change is retried and arrives too;
- rotating the gateway's client certificate files under the running gateway: the next
  connections to the store present the new certificate, on the outbox's channel and on the
  route-change channel, without a restart.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from google.protobuf.timestamp_pb2 import Timestamp
from support.certs import CertificateAuthority, Leaf

from lineage.v1 import lineage_pb2, lineage_pb2_grpc
from loadtests.local.topology import ManagedProcess, start_gateway, start_lineage
from runtimes.training.datasets import sample_requests
from scoring.v1 import scoring_pb2, scoring_pb2_grpc
from scoring.v1.requests import score_request

GATEWAY_A = "spiffe://bank.test/ns/scoring/sa/gateway-a"
GATEWAY_B = "spiffe://bank.test/ns/scoring/sa/gateway-b"
AUDITOR = "spiffe://bank.test/ns/audit/sa/auditor"
WRITER = ["ingest", "record_route_changes", "register_models"]


def _policy(*writers: str) -> str:
    grants: list[dict[str, Any]] = [
        {"principals": [AUDITOR], "permissions": ["read_decisions", "read_access_log"]}
    ]
    if writers:
        grants.append({"principals": list(writers), "permissions": WRITER})
    return yaml.safe_dump({"lineage": grants})


def _replace(path: Path, data: bytes) -> None:
    """Atomically, as a Secret update swaps its files."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


@dataclass
class Path2Store:
    ca: CertificateAuthority
    store: ManagedProcess
    gateway: ManagedProcess
    policy: Path
    cert: Path
    key: Path
    routes: Path
    outbox: Path

    def grant(self, *writers: str) -> None:
        _replace(self.policy, _policy(*writers).encode())

    def rotate(self, leaf: Leaf) -> None:
        # The key first: a reopen between the two writes sees a mismatched pair and waits.
        _replace(self.key, leaf.key_pem)
        _replace(self.cert, leaf.cert_pem)

    def auditor(self) -> tuple[grpc.Channel, lineage_pb2_grpc.LineageServiceStub]:
        leaf = self.ca.client((AUDITOR,))
        credentials = grpc.ssl_channel_credentials(
            root_certificates=self.ca.cert_pem,
            private_key=leaf.key_pem,
            certificate_chain=leaf.cert_pem,
        )
        channel = grpc.secure_channel(self.store.address, credentials)
        return channel, lineage_pb2_grpc.LineageServiceStub(channel)

    def access_log(self, principal: str) -> list[lineage_pb2.AccessLogEntry]:
        channel, stub = self.auditor()
        with channel:
            request = lineage_pb2.ListAccessLogRequest(principal=principal, limit=1000)
            return list(stub.ListAccessLog(request, timeout=5).entries)

    def stored(self, decision_ids: list[str]) -> set[str]:
        channel, stub = self.auditor()
        found: set[str] = set()
        with channel:
            for decision_id in decision_ids:
                try:
                    stub.GetDecision(lineage_pb2.GetDecisionRequest(decision_id=decision_id))
                except grpc.RpcError as e:
                    assert e.code() == grpc.StatusCode.NOT_FOUND, e
                else:
                    found.add(decision_id)
        return found

    def score(self, n: int) -> list[str]:
        with grpc.insecure_channel(self.gateway.address) as channel:
            stub = scoring_pb2_grpc.ScoringServiceStub(channel)
            ids = []
            rows = sample_requests("card-fraud", n, seed=time.time_ns() % 100_000)
            for i, features in enumerate(rows):
                request = score_request(
                    f"mtls-{time.time_ns()}-{i}", "card-fraud", f"e{i}", features
                )
                reply: scoring_pb2.ScoreResponse = stub.Score(request, timeout=10)
                ids.append(reply.decision_id)
        return ids


def _until(
    check: Callable[[], bool], what: str, proc: ManagedProcess, timeout_s: float = 30
) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"{what}\n{proc.log_tail(60)}"
        time.sleep(0.1)


@pytest.fixture
def path2store(
    request: pytest.FixtureRequest,
    runtime: ManagedProcess,
    model_dir: Path,
    demo_config: Callable[[str], dict[str, Any]],
    write_routes: Callable[[Path, dict[str, Any]], Path],
    tmp_path: Path,
) -> Iterator[Path2Store]:
    """``request.param``: the writers the store's policy grants at start."""
    ca = CertificateAuthority("bank test CA")
    ca_file = ca.write(tmp_path / "ca.crt")
    store_cert, store_key = ca.server("scoregate-lineage").write(tmp_path, "store")
    policy = tmp_path / "policy.yaml"
    policy.write_text(_policy(*request.param))
    store = start_lineage(
        tmp_path / "lineage.db",
        tmp_path / "store",
        insecure=False,
        extra_args=[
            "--tls-cert-file", str(store_cert), "--tls-key-file", str(store_key),
            "--tls-ca-file", str(ca_file), "--tls-client-certificate", "required",
            "--access-policy", str(policy), "--access-policy-interval", "0.1",
            "--access-log-flush", "0.02",
        ],
    )  # fmt: skip
    cert, key = ca.client((GATEWAY_A,)).write(tmp_path, "gateway")
    routes = write_routes(tmp_path / "routes.yaml", demo_config(runtime.address))
    outbox = tmp_path / "outbox"
    gateway = start_gateway(
        routes,
        model_dir,
        tmp_path / "gateway",
        lineage_endpoint=store.address,
        outbox_dir=outbox,
        extra_args=[
            "--lineage-tls", "true", "--lineage-tls-ca-file", str(ca_file),
            "--lineage-tls-cert-file", str(cert), "--lineage-tls-key-file", str(key),
            "--reload-interval-s", "0.2",
        ],
    )  # fmt: skip
    try:
        yield Path2Store(ca, store, gateway, policy, cert, key, routes, outbox)
    finally:
        codes = (gateway.stop(), store.stop())
        assert codes == (0, 0), gateway.log_tail() + store.log_tail()


@pytest.mark.parametrize("path2store", [()], indirect=True)
def test_a_refused_gateway_keeps_its_records_until_the_policy_allows_it(
    path2store: Path2Store,
) -> None:
    p = path2store
    ids = p.score(8)
    # Refused as the gateway's principal, for the permission it lacks; nothing stored.
    _until(
        lambda: any(
            (e.method, e.permission, e.outcome) == ("Export", "ingest", "PERMISSION_DENIED")
            for e in p.access_log(GATEWAY_A)
        ),
        "no refused Export in the store's access log",
        p.store,
    )
    assert {e.verified_by for e in p.access_log(GATEWAY_A)} == {"mtls"}
    assert p.stored(ids) == set()
    # The records wait in the outbox (a refusal is not the record's fault: never dead-lettered).
    assert any(p.outbox.glob("*.seg"))
    assert not list(p.outbox.glob("*dead*"))

    # The start-up route change (its manifests first) was refused too, and is retried.
    _until(
        lambda: any(
            e.method in ("RegisterManifest", "RecordRouteChange")
            and e.outcome == "PERMISSION_DENIED"
            for e in p.access_log(GATEWAY_A)
        ),
        "no refused route change in the store's access log",
        p.store,
    )

    p.grant(GATEWAY_A)
    _until(lambda: p.stored(ids) == set(ids), "not every decision arrived", p.gateway)
    # What served card-fraud is answerable: the refused route change was delivered after all.
    _until(
        lambda: any(
            (e.method, e.outcome) == ("RecordRouteChange", "OK") for e in p.access_log(GATEWAY_A)
        ),
        "the start-up route change never arrived",
        p.store,
    )
    channel, stub = p.auditor()
    with channel:
        now = Timestamp()
        now.GetCurrentTime()
        serving = stub.GetServingAt(
            lineage_pb2.GetServingAtRequest(decision_point="card-fraud", at=now), timeout=5
        )
    assert serving.HasField("in_force"), serving
    assert {(t.arm, t.model_version) for t in serving.targets} >= {("primary", "1")}
    # And the decisions scored after the grant too.
    later = p.score(2)
    _until(lambda: p.stored(later) == set(later), "later decisions did not arrive", p.gateway)


@pytest.mark.parametrize("path2store", [(GATEWAY_A,)], indirect=True)
def test_a_rotated_client_certificate_is_presented_without_a_restart(
    path2store: Path2Store,
) -> None:
    p = path2store
    first = p.score(3)
    _until(lambda: p.stored(first) == set(first), "decisions before rotation", p.gateway)
    _until(
        lambda: any(e.method == "RecordRouteChange" for e in p.access_log(GATEWAY_A)),
        "the start-up route change",
        p.store,
    )
    pid = p.gateway.popen.pid

    p.rotate(p.ca.client((GATEWAY_B,)))
    # A channel looks at its files at most once a second, when a call asks for it.
    time.sleep(1.2)
    # The outbox's channel: the next exports come as gateway-b, which the policy does not know
    # yet, so the store logs the refusals under the new principal.
    after = p.score(3)
    _until(
        lambda: any(
            (e.method, e.outcome) == ("Export", "PERMISSION_DENIED")
            for e in p.access_log(GATEWAY_B)
        ),
        "no export under the rotated certificate",
        p.store,
    )
    p.grant(GATEWAY_B)
    _until(lambda: p.stored(after) == set(after), "decisions after rotation", p.gateway)

    # The route-change channel: a routing change is recorded under the new certificate.
    config = yaml.safe_load(p.routes.read_text())
    point = config["decision_points"]["card-fraud"]
    point["timeout_ms"] = int(point.get("timeout_ms", 250)) + 1
    _replace(p.routes, yaml.safe_dump(config, sort_keys=False).encode())
    _until(
        lambda: any(
            (e.method, e.outcome) == ("RecordRouteChange", "OK") for e in p.access_log(GATEWAY_B)
        ),
        "no route change under the rotated certificate",
        p.store,
    )
    assert p.gateway.popen.pid == pid and p.gateway.popen.poll() is None
    assert "client certificate for" in p.gateway.log_tail(200)
