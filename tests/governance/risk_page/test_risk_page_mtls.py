"""The risk page of a store that requires client certificates: the certificate names the
principal as on the gRPC port, a connection without one fails its handshake, and a rotated
server certificate is served without a restart."""

from __future__ import annotations

import os
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from lineage_support import sqlite_url
from risk_page_support import error_text, page_url
from support.certs import CertificateAuthority, Leaf
from test_lineage_security import POLICY

from loadtests.local.topology import ManagedProcess, start_lineage

READER = "spiffe://bank.test/ns/risk/sa/analyst-7"  # read_decisions and read_features
AUDITOR = "spiffe://bank.test/ns/audit/sa/auditor"  # read_access_log only


@dataclass
class MutualStore:
    process: ManagedProcess
    server_ca: CertificateAuthority
    clients: CertificateAuthority
    cert: Path
    key: Path
    workdir: Path


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
            "--web-port", "0",
        ],
    )  # fmt: skip
    try:
        yield MutualStore(proc, server_ca, clients, cert, key, tmp_path)
    finally:
        assert proc.stop() == 0, proc.log_tail()


def _context(
    store: MutualStore, trusted: CertificateAuthority, client: Leaf | None
) -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=trusted.cert_pem.decode())
    if client is not None:
        cert, key = client.write(store.workdir, f"client-{time.monotonic_ns()}")
        context.load_cert_chain(cert, key)
    return context


def _get(store: MutualStore, context: ssl.SSLContext) -> httpx.Response:
    return httpx.get(
        page_url(store.process) + "timeline", params={"decision_point": "card-fraud"},
        verify=context, timeout=10,
    )  # fmt: skip


def test_the_client_certificate_names_the_principal(mutual: MutualStore) -> None:
    reader = _get(mutual, _context(mutual, mutual.server_ca, mutual.clients.client((READER,))))
    assert reader.status_code == 200
    assert READER in reader.text  # "signed in as"
    auditor = _get(mutual, _context(mutual, mutual.server_ca, mutual.clients.client((AUDITOR,))))
    assert auditor.status_code == 403
    assert "lineage:read_decisions" in error_text(auditor.text)


def test_a_connection_without_a_client_certificate_fails(mutual: MutualStore) -> None:
    with pytest.raises(httpx.HTTPError):
        _get(mutual, _context(mutual, mutual.server_ca, None)).raise_for_status()


def test_a_rotated_server_certificate_is_served_without_a_restart(mutual: MutualStore) -> None:
    client = mutual.clients.client((READER,))
    rotated_ca = CertificateAuthority("rotated server CA")
    leaf = rotated_ca.server("scoregate-lineage")
    for data, path in ((leaf.key_pem, mutual.key), (leaf.cert_pem, mutual.cert)):
        tmp = path.with_name(path.name + ".new")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    deadline = time.monotonic() + 10
    while True:
        try:
            response = _get(mutual, _context(mutual, rotated_ca, client))
            break
        except httpx.ConnectError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    assert response.status_code == 200
    with pytest.raises(httpx.ConnectError):
        _get(mutual, _context(mutual, mutual.server_ca, client))
