"""A gateway enforcing approvals reads them from a store that requires client certificates.

The store runs with mutual TLS and an access policy: a release principal registers card-fraud's
manifest, a model owner and an independent validator approve version 1 (each with their own
certificate, their roles from the policy), and the gateway starts with ``--approvals enforce``,
its own certificate and the ``read_approvals`` grant (the one the chart gives it). Shown: it
serves the approved version and its lookup is in the store's access log under its principal;
without ``read_approvals`` it refuses to start (fail closed) and says why.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from support.certs import CertificateAuthority

from lineage.v1 import lineage_pb2, lineage_pb2_grpc
from loadtests.local.topology import ManagedProcess, TopologyError, start_gateway, start_lineage
from runtimes.manifest import MANIFEST_FILE, find_model_folders
from runtimes.training.datasets import sample_requests
from scoring.v1 import scoring_pb2_grpc
from scoring.v1.requests import score_request

GATEWAY = "spiffe://bank.test/ns/scoring/sa/gateway"
OWNER = "spiffe://bank.test/ns/models/sa/fraud-model-owner"
VALIDATOR = "spiffe://bank.test/ns/validation/sa/independent-validator"
RELEASE = "spiffe://bank.test/ns/release/sa/pipeline"
AUDITOR = "spiffe://bank.test/ns/audit/sa/auditor"


def _policy(gateway_permissions: list[str]) -> str:
    return yaml.safe_dump(
        {
            "lineage": [
                {"principals": [GATEWAY], "permissions": gateway_permissions},
                {
                    "principals": [OWNER],
                    "permissions": ["approve_models", "read_approvals"],
                    "roles": ["model_owner"],
                },
                {
                    "principals": [VALIDATOR],
                    "permissions": ["approve_models", "read_approvals"],
                    "roles": ["validator"],
                },
                {"principals": [RELEASE], "permissions": ["register_models"]},
                {"principals": [AUDITOR], "permissions": ["read_access_log"]},
            ]
        }
    )


@dataclass
class SecuredStore:
    ca: CertificateAuthority
    store: ManagedProcess
    policy: Path
    ca_file: Path
    folder: Path

    def stub(self, principal: str) -> tuple[grpc.Channel, lineage_pb2_grpc.LineageServiceStub]:
        leaf = self.ca.client((principal,))
        credentials = grpc.ssl_channel_credentials(
            root_certificates=self.ca.cert_pem,
            private_key=leaf.key_pem,
            certificate_chain=leaf.cert_pem,
        )
        channel = grpc.secure_channel(self.store.address, credentials)
        return channel, lineage_pb2_grpc.LineageServiceStub(channel)

    def gateway(self, model_dir: Path, routes: Path, name: str = "gateway") -> ManagedProcess:
        cert, key = self.ca.client((GATEWAY,)).write(self.folder, f"{name}-client")
        return start_gateway(
            routes,
            model_dir,
            self.folder / name,
            lineage_endpoint=self.store.address,
            outbox_dir=self.folder / name / "outbox",
            extra_args=[
                "--lineage-tls", "true", "--lineage-tls-ca-file", str(self.ca_file),
                "--lineage-tls-cert-file", str(cert), "--lineage-tls-key-file", str(key),
                "--approvals", "enforce",
            ],
        )  # fmt: skip


@pytest.fixture
def secured_store(
    request: pytest.FixtureRequest, model_dir: Path, tmp_path: Path
) -> Iterator[SecuredStore]:
    """``request.param``: the gateway's permissions in the store's policy."""
    ca = CertificateAuthority("bank test CA")
    ca_file = ca.write(tmp_path / "ca.crt")
    store_cert, store_key = ca.server("scoregate-lineage").write(tmp_path, "store")
    policy = tmp_path / "policy.yaml"
    policy.write_text(_policy(request.param))
    store = start_lineage(
        tmp_path / "lineage.db",
        tmp_path / "store",
        insecure=False,
        extra_args=[
            "--tls-cert-file", str(store_cert), "--tls-key-file", str(store_key),
            "--tls-ca-file", str(ca_file), "--tls-client-certificate", "required",
            "--access-policy", str(policy), "--access-log-flush", "0.02",
        ],
    )  # fmt: skip
    secured = SecuredStore(ca, store, policy, ca_file, tmp_path)
    try:
        _release_and_approve_card_fraud_v1(secured, model_dir)
        yield secured
    finally:
        assert store.stop() == 0, store.log_tail()


def _release_and_approve_card_fraud_v1(secured: SecuredStore, model_dir: Path) -> None:
    manifests = [(f / MANIFEST_FILE).read_text() for f in find_model_folders(model_dir)]
    (manifest,) = [
        m
        for m in manifests
        if (json.loads(m)["name"], str(json.loads(m)["version"])) == ("card-fraud", "1")
    ]
    channel, stub = secured.stub(RELEASE)
    with channel:
        stub.RegisterManifest(lineage_pb2.RegisterManifestRequest(manifest_json=manifest))
    version = lineage_pb2.ModelVersionRef(model_name="card-fraud", model_version="1")
    for approver in (OWNER, VALIDATOR):
        channel, stub = secured.stub(approver)
        with channel:
            stub.RecordApproval(
                lineage_pb2.RecordApprovalRequest(model=version, comment="validated"), timeout=5
            )


def _card_fraud_only(demo_config: Callable[[str], dict[str, Any]], runtime: str) -> dict[str, Any]:
    config = demo_config(runtime)
    config["models"] = {"card-fraud": config["models"]["card-fraud"]}
    config["decision_points"] = {"card-fraud": config["decision_points"]["card-fraud"]}
    return config


@pytest.mark.parametrize(
    "secured_store",
    [["ingest", "record_route_changes", "register_models", "read_approvals"]],
    indirect=True,
)
def test_an_enforcing_gateway_reads_approvals_over_mutual_tls(
    secured_store: SecuredStore,
    runtime: ManagedProcess,
    model_dir: Path,
    demo_config: Callable[[str], dict[str, Any]],
    tmp_path: Path,
) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text(yaml.safe_dump(_card_fraud_only(demo_config, runtime.address)))
    gateway = secured_store.gateway(model_dir, routes)
    try:
        with grpc.insecure_channel(gateway.address) as channel:
            stub = scoring_pb2_grpc.ScoringServiceStub(channel)
            features = sample_requests("card-fraud", 1, seed=5)[0]
            reply = stub.Score(score_request("appr-1", "card-fraud", "c1", features), timeout=10)
        assert (reply.model_name, reply.model_version) == ("card-fraud", "1")
        deadline = time.monotonic() + 15
        while True:
            channel, audit = secured_store.stub(AUDITOR)
            with channel:
                entries = audit.ListAccessLog(
                    lineage_pb2.ListAccessLogRequest(principal=GATEWAY, limit=100), timeout=5
                ).entries
            if any((e.method, e.outcome) == ("GetApprovals", "OK") for e in entries):
                break
            assert time.monotonic() < deadline, [(e.method, e.outcome) for e in entries]
            time.sleep(0.1)
        assert {e.verified_by for e in entries if e.method == "GetApprovals"} == {"mtls"}
    finally:
        assert gateway.stop() == 0, gateway.log_tail()


@pytest.mark.parametrize(
    "secured_store", [["ingest", "record_route_changes", "register_models"]], indirect=True
)
def test_without_read_approvals_an_enforcing_gateway_refuses_to_start(
    secured_store: SecuredStore,
    runtime: ManagedProcess,
    model_dir: Path,
    demo_config: Callable[[str], dict[str, Any]],
    tmp_path: Path,
) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text(yaml.safe_dump(_card_fraud_only(demo_config, runtime.address)))
    with pytest.raises(TopologyError) as refused:
        secured_store.gateway(model_dir, routes)
    message = str(refused.value)
    assert "exited with code 2" in message, message
    assert "read_approvals" in message, message
