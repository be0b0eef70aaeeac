"""The store's listener: mutual TLS principals, a server certificate rotated without a restart,
and the explicit plaintext setting. The listener is the same whatever the database, so these
run on SQLite only."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from lineage_support import MakeRecord, sqlite_url
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2
from support.certs import CertificateAuthority, Leaf
from test_lineage_otlp import decision_span
from test_lineage_security import POLICY

from governance.convert import timestamp_from_us
from lineage.v1 import lineage_pb2, lineage_pb2_grpc
from loadtests.local.topology import ManagedProcess, TopologyError, start_lineage
from security.tls import ClientTls, open_channel

RISK = "spiffe://bank.test/ns/risk/sa/analyst-7"
AUDITOR = "spiffe://bank.test/ns/audit/sa/auditor"
UNKNOWN_ID = "0190b3a2-c7d4-7f3e-8a1b-2c3d4e5f6a7b"


@dataclass
class MutualStore:
    process: ManagedProcess
    server_ca: CertificateAuthority
    clients: CertificateAuthority
    cert: Path
    key: Path
    policy: Path


def _replace(leaf: Leaf, cert: Path, key: Path) -> None:
    """As a Secret update does: each file swapped whole, the key first."""
    for data, path in ((leaf.key_pem, key), (leaf.cert_pem, cert)):
        tmp = path.with_name(path.name + ".new")
        tmp.write_bytes(data)
        os.replace(tmp, path)


@pytest.fixture
def mutual(tmp_path: Path) -> Iterator[MutualStore]:
    server_ca, clients = CertificateAuthority("server CA"), CertificateAuthority("client CA")
    cert, key = server_ca.server("scoregate-lineage").write(tmp_path, "server")
    policy = tmp_path / "access-policy.yaml"
    policy.write_text(POLICY)
    proc = start_lineage(
        sqlite_url(tmp_path / "lineage.db"),
        tmp_path,
        insecure=False,
        extra_args=[
            "--tls-cert-file", str(cert), "--tls-key-file", str(key),
            "--tls-ca-file", str(clients.write(tmp_path / "clients.crt")),
            "--tls-client-certificate", "required", "--access-policy", str(policy),
            "--access-log-flush", "0.02", "--access-policy-interval", "0.1",
        ],
    )  # fmt: skip
    try:
        yield MutualStore(proc, server_ca, clients, cert, key, policy)
    finally:
        assert proc.stop() == 0, proc.log_tail()


def _stub(
    store: MutualStore, trusted: CertificateAuthority, client: Leaf
) -> tuple[grpc.Channel, lineage_pb2_grpc.LineageServiceStub]:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=trusted.cert_pem,
        private_key=client.key_pem,
        certificate_chain=client.cert_pem,
    )
    channel = grpc.secure_channel(store.process.address, credentials)
    return channel, lineage_pb2_grpc.LineageServiceStub(channel)


def _get(store: MutualStore, trusted: CertificateAuthority, client: Leaf) -> grpc.StatusCode:
    channel, stub = _stub(store, trusted, client)
    with channel:
        try:
            stub.GetDecision(lineage_pb2.GetDecisionRequest(decision_id=UNKNOWN_ID), timeout=5)
        except grpc.RpcError as e:
            code: grpc.StatusCode = e.code()
            return code
    return grpc.StatusCode.OK


def test_client_certificates_name_the_principal(mutual: MutualStore) -> None:
    # Allowed to read, so the store looks and finds nothing.
    assert _get(mutual, mutual.server_ca, mutual.clients.client((RISK,))) == (
        grpc.StatusCode.NOT_FOUND
    )
    outsider = mutual.clients.client(("spiffe://bank.test/ns/payments/sa/x",))
    assert _get(mutual, mutual.server_ca, outsider) == grpc.StatusCode.PERMISSION_DENIED
    stranger = CertificateAuthority("unknown CA").client((RISK,))
    assert _get(mutual, mutual.server_ca, stranger) == grpc.StatusCode.UNAVAILABLE

    channel, stub = _stub(mutual, mutual.server_ca, mutual.clients.client((AUDITOR,)))
    with channel:
        deadline = time.monotonic() + 10
        while True:
            entries = stub.ListAccessLog(
                lineage_pb2.ListAccessLogRequest(decision_id=UNKNOWN_ID), timeout=5
            ).entries
            if len(entries) >= 2 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    seen = [(e.principal, e.verified_by, e.outcome) for e in entries]
    assert seen == [
        (RISK, "mtls", "NOT_FOUND"),
        ("spiffe://bank.test/ns/payments/sa/x", "mtls", "PERMISSION_DENIED"),
    ]


def test_a_rotated_server_certificate_is_served_without_a_restart(mutual: MutualStore) -> None:
    client = mutual.clients.client((RISK,))
    assert _get(mutual, mutual.server_ca, client) == grpc.StatusCode.NOT_FOUND
    renewed_ca = CertificateAuthority("renewed server CA")
    _replace(renewed_ca.server("scoregate-lineage"), mutual.cert, mutual.key)
    # The next handshake takes the new pair: clients trusting only the old CA are refused.
    assert _get(mutual, renewed_ca, client) == grpc.StatusCode.NOT_FOUND
    assert _get(mutual, mutual.server_ca, client) == grpc.StatusCode.UNAVAILABLE
    assert mutual.process.popen.poll() is None
    assert "TLS certificate reloaded" in mutual.process.log_tail(100)


def test_plaintext_needs_the_explicit_setting(tmp_path: Path) -> None:
    with pytest.raises(TopologyError, match="--plaintext true to serve without TLS"):
        start_lineage(sqlite_url(tmp_path / "a.db"), tmp_path / "a", insecure=False,
                      extra_args=["--open-access", "true"])  # fmt: skip
    with pytest.raises(TopologyError, match="no access policy"):
        start_lineage(sqlite_url(tmp_path / "b.db"), tmp_path / "b", insecure=False,
                      extra_args=["--plaintext", "true"])  # fmt: skip


def test_plaintext_beyond_loopback_is_warned_about(tmp_path: Path) -> None:
    loopback = start_lineage(sqlite_url(tmp_path / "a.db"), tmp_path / "a")
    everywhere = start_lineage(
        sqlite_url(tmp_path / "b.db"), tmp_path / "b", extra_args=["--host", "0.0.0.0"]
    )
    try:
        assert "PLAINTEXT" not in loopback.log_tail(100)
        assert "serving PLAINTEXT on 0.0.0.0" in everywhere.log_tail(100)
    finally:
        assert loopback.stop() == 0 and everywhere.stop() == 0


def test_a_changed_policy_governs_the_next_calls(mutual: MutualStore) -> None:
    outsider = mutual.clients.client(("spiffe://bank.test/ns/payments/sa/x",))
    assert _get(mutual, mutual.server_ca, outsider) == grpc.StatusCode.PERMISSION_DENIED
    grant = (
        "  - principals: [spiffe://bank.test/ns/payments/**]\n    permissions: [read_decisions]\n"
    )
    mutual.policy.write_text(POLICY + grant)
    deadline = time.monotonic() + 10
    while _get(mutual, mutual.server_ca, outsider) != grpc.StatusCode.NOT_FOUND:
        assert time.monotonic() < deadline, mutual.process.log_tail()
        time.sleep(0.05)
    mutual.policy.write_text("lineage: [nonsense]\n")  # refused: the last good one stays
    time.sleep(0.5)
    assert _get(mutual, mutual.server_ca, outsider) == grpc.StatusCode.NOT_FOUND
    assert "access policy change refused" in mutual.process.log_tail(100)


async def test_a_gateway_writes_through_its_own_client_tls(
    mutual: MutualStore, tmp_path: Path, make_record: MakeRecord
) -> None:
    """The channel the gateway opens to the store (``security.tls.ClientTls``), with the
    gateway's certificate: it may send records and route changes, and nothing else."""
    ca_file = mutual.server_ca.write(tmp_path / "server-ca.crt")
    gateway = mutual.clients.client(("spiffe://bank.test/ns/scoring/sa/gateway",))
    cert, key = gateway.write(tmp_path, "gateway")
    record = make_record()
    request = trace_service_pb2.ExportTraceServiceRequest(
        resource_spans=[
            trace_pb2.ResourceSpans(
                scope_spans=[trace_pb2.ScopeSpans(spans=[decision_span(record)])]
            )
        ]
    )
    change = lineage_pb2.RouteChange(
        changed_at=timestamp_from_us(time.time_ns() // 1000), config_version="cfg-1", diff_json="{}"
    )
    async with open_channel(mutual.process.address, ClientTls(ca_file, cert, key)) as channel:
        exported = await trace_service_pb2_grpc.TraceServiceStub(channel).Export(request, timeout=5)
        stub = lineage_pb2_grpc.LineageServiceStub(channel)
        recorded = await stub.RecordRouteChange(
            lineage_pb2.RecordRouteChangeRequest(change=change), timeout=5
        )
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.GetDecision(
                lineage_pb2.GetDecisionRequest(decision_id=record.decision_id), timeout=5
            )
    assert not exported.HasField("partial_success") and not recorded.duplicate
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "'lineage:read_decisions'" in str(refused.value.details())
    # The risk analyst's certificate reads it back.
    channel, reader = _stub(mutual, mutual.server_ca, mutual.clients.client((RISK,)))
    with channel:
        stored = reader.GetDecision(
            lineage_pb2.GetDecisionRequest(decision_id=record.decision_id), timeout=5
        )
    assert stored.record_sha256 and stored.entity_key == record.entity_key
