"""``security.tls.ReopeningChannel`` against a real mutual-TLS lineage store: after its client
certificate files are rotated, the next calls present the new certificate (the store's
refusal names the principal it saw); a rotation caught half-written keeps the open channel."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import grpc
import yaml
from support.certs import CertificateAuthority, Leaf

from lineage.v1 import lineage_pb2, lineage_pb2_grpc
from loadtests.local.topology import start_lineage
from security.tls import ClientTls, ReopeningChannel

UNKNOWN_ID = "0190b3a2-c7d4-7f3e-8a1b-2c3d4e5f6a7b"
OLD = "spiffe://bank.test/ns/scoring/sa/old"
NEW = "spiffe://bank.test/ns/scoring/sa/new"


def _replace(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


async def _seen_as(channel: ReopeningChannel) -> str:
    """The principal the store saw, from its refusal (the policy grants no one anything)."""
    stub = lineage_pb2_grpc.LineageServiceStub(channel.channel)
    try:
        await stub.GetDecision(lineage_pb2.GetDecisionRequest(decision_id=UNKNOWN_ID), timeout=5)
    except grpc.aio.AioRpcError as e:
        assert e.code() == grpc.StatusCode.PERMISSION_DENIED, e
        return str(e.details()).split("'")[1]
    raise AssertionError("the call was allowed")


async def test_a_rotated_client_certificate_is_used_by_the_next_calls(tmp_path: Path) -> None:
    ca = CertificateAuthority()
    ca_file = ca.write(tmp_path / "ca.crt")
    server_cert, server_key = ca.server("scoregate-lineage").write(tmp_path, "server")
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump({"lineage": []}))
    store = start_lineage(
        tmp_path / "lineage.db",
        tmp_path,
        insecure=False,
        extra_args=[
            "--tls-cert-file", str(server_cert), "--tls-key-file", str(server_key),
            "--tls-ca-file", str(ca_file), "--tls-client-certificate", "required",
            "--access-policy", str(policy),
        ],
    )  # fmt: skip
    cert, key = ca.client((OLD,)).write(tmp_path, "client")
    channel = ReopeningChannel(store.address, ClientTls(ca_file, cert, key), check_interval_s=0.05)
    try:
        assert await _seen_as(channel) == OLD
        new: Leaf = ca.client((NEW,))

        # Half-way through a rotation (the key written, not yet the certificate): the pair does
        # not match, so the open channel goes on as before.
        _replace(key, new.key_pem)
        await asyncio.sleep(0.1)
        assert await _seen_as(channel) == OLD
        assert channel.reopened == 0

        _replace(cert, new.cert_pem)
        await asyncio.sleep(0.1)
        assert await _seen_as(channel) == NEW
        assert channel.reopened == 1
        # Unchanged files: no further reopening.
        await asyncio.sleep(0.1)
        assert await _seen_as(channel) == NEW and channel.reopened == 1
    finally:
        await channel.close()
        assert store.stop() == 0, store.log_tail()
