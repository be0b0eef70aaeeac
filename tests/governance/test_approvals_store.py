"""Approvals of model versions in a real store behind TLS, bearer tokens and an access policy,
on both backends: who may approve, what role is recorded, the four-eyes rule, revocation, bad
input, and approvals inside the hash chain that ``scoregate lineage verify`` checks.

The policy: ``owner`` (the model's author) approves as model_owner, ``validator`` and
``validator-2`` as validators, ``analyst`` only reads decisions, ``release`` registers manifests,
``gateway`` reads approvals.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from lineage_support import BACKENDS, database, raw_database
from support.certs import CertificateAuthority
from support.tokens import AUDIENCE, ISSUER, Issuer, bearer

from lineage.v1 import lineage_pb2, lineage_pb2_grpc
from loadtests.local.topology import ManagedProcess, start_lineage
from runtimes.manifest import Manifest, NumberFeature, Training

POLICY = """
lineage:
  - principals: [owner]
    permissions: [approve_models, read_approvals]
    roles: [model_owner]
  - principals: [validator, validator-2]
    permissions: [approve_models, read_approvals]
    roles: [validator]
  - principals: [analyst]
    permissions: [read_decisions]
  - principals: [release]
    permissions: [register_models]
  - principals: [gateway]
    permissions: [read_approvals]
"""


def manifest_json(version: str, author: str = "owner") -> str:
    sha = hashlib.sha256(f"toy-{version}-{author}".encode()).hexdigest()
    return Manifest(
        name="toy",
        version=version,
        author=author,
        features=(NumberFeature(name="x", min=0, max=1),),
        artifact_sha256=sha,
        training=Training(
            algorithm="hand-made",
            seed=0,
            rows=100,
            heldout_rows=40,
            data_fingerprint="0" * 64,
            heldout_auc=0.75,
            libraries={},
        ),
        baselines={},
    ).model_dump_json()


@dataclass
class Store:
    process: ManagedProcess
    db_url: str
    ca: Path
    issuer: Issuer

    def stub(self) -> lineage_pb2_grpc.LineageServiceStub:
        credentials = grpc.ssl_channel_credentials(root_certificates=self.ca.read_bytes())
        return lineage_pb2_grpc.LineageServiceStub(
            grpc.secure_channel(self.process.address, credentials)
        )

    def auth(self, subject: str) -> tuple[tuple[str, str], ...]:
        return bearer(self.issuer.token("k1", subject))

    def register(self, text: str) -> str:
        request = lineage_pb2.RegisterManifestRequest(manifest_json=text)
        reply = self.stub().RegisterManifest(request, timeout=10, metadata=self.auth("release"))
        return str(reply.model.artifact_sha256)

    def approve(self, who: str, sha: str, **extra: object) -> lineage_pb2.Approval:
        request = lineage_pb2.RecordApprovalRequest(
            model=lineage_pb2.ModelVersionRef(artifact_sha256=sha), **extra
        )
        reply: lineage_pb2.Approval = self.stub().RecordApproval(
            request, timeout=10, metadata=self.auth(who)
        )
        return reply

    def status(self, sha: str, who: str = "gateway") -> lineage_pb2.ApprovalStatus:
        request = lineage_pb2.GetApprovalsRequest(artifact_sha256=[sha])
        reply = self.stub().GetApprovals(request, timeout=10, metadata=self.auth(who))
        status: lineage_pb2.ApprovalStatus = reply.statuses[0]
        return status


def start_secure(url: str, workdir: Path) -> Store:
    ca = CertificateAuthority()
    cert, key = ca.server("scoregate-lineage").write(workdir, "server")
    issuer = Issuer()
    issuer.rsa("k1")
    jwks = issuer.write_jwks(workdir / "jwks.json")
    policy = workdir / "policy.yaml"
    policy.write_text(POLICY)
    proc = start_lineage(
        url,
        workdir,
        insecure=False,
        extra_args=[
            "--tls-cert-file", str(cert), "--tls-key-file", str(key),
            "--jwt-jwks-file", str(jwks), "--jwt-issuer", ISSUER,
            "--jwt-audience", AUDIENCE, "--jwt-algorithms", "RS256",
            "--access-policy", str(policy),
        ],
    )  # fmt: skip
    return Store(proc, url, ca.write(workdir / "ca.crt"), issuer)


@pytest.fixture(scope="module", params=BACKENDS)
def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Store]:
    workdir = tmp_path_factory.mktemp("approvals-store")
    with database(request.param, workdir) as url:
        secure = start_secure(url, workdir)
        try:
            yield secure
        finally:
            assert secure.process.stop() == 0, secure.process.log_tail()


def _refused(fn: object) -> grpc.RpcError:
    try:
        fn()  # type: ignore[operator]
    except grpc.RpcError as e:
        return e
    raise AssertionError("the call was not refused")


def _verify(db_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "governance.cli", "verify", "--db-url", db_url],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_two_distinct_approvers_approve_and_the_role_comes_from_the_policy(store: Store) -> None:
    sha = store.register(manifest_json("1"))
    assert store.status(sha).missing == "0 of 2 approvals"
    first = store.approve(
        "owner",
        sha,
        evidence=lineage_pb2.ValidationEvidence(report_sha256="a" * 64, report_uri="s3://r/1"),
        # A request naming someone else and another role is not believed under a policy.
        principal="validator",
        roles=["validator"],
    )
    assert (first.principal, list(first.roles), first.verified_by) == (
        "owner",
        ["model_owner"],
        "jwt",
    )
    assert (first.model_name, first.model_version) == ("toy", "1")
    assert first.evidence.report_uri == "s3://r/1"
    store.approve("owner", sha)
    status = store.status(sha)
    assert not status.approved
    assert status.missing == "1 of 2 approvals (owner)", "the same principal twice counts once"
    store.approve("validator", sha)
    status = store.status(sha)
    assert status.approved, status.missing
    assert list(status.approvers) == ["owner", "validator"]
    assert status.author == "owner"
    assert (status.heldout_auc, status.heldout_rows) == (0.75, 40)
    assert [a.action for a in status.history] == ["approve"] * 3


def test_two_approvers_other_than_the_author_are_enough(store: Store) -> None:
    sha = store.register(manifest_json("2"))
    store.approve("validator", sha)
    store.approve("validator-2", sha)
    assert store.status(sha).approved


def test_the_author_approving_alone_is_not_enough(store: Store) -> None:
    sha = store.register(manifest_json("3"))
    store.approve("owner", sha)
    store.approve("owner", sha)
    status = store.status(sha)
    assert not status.approved and status.missing == "1 of 2 approvals (owner)"


def test_revocation_voids_every_approval_before_it(store: Store) -> None:
    sha = store.register(manifest_json("4"))
    store.approve("owner", sha)
    store.approve("validator", sha)
    assert store.status(sha).approved
    request = lineage_pb2.RevokeApprovalRequest(
        model=lineage_pb2.ModelVersionRef(model_name="toy", model_version="4"),
        reason="held-out AUC not reproduced",
    )
    revoked = store.stub().RevokeApproval(request, timeout=10, metadata=store.auth("validator"))
    assert revoked.revoked == 2
    assert revoked.revocation.principal == "validator"
    status = store.status(sha)
    assert not status.approved and status.missing == "0 of 2 approvals"
    store.approve("validator-2", sha)
    store.approve("owner", sha)
    assert store.status(sha).approved, "new approvals after a revocation count"


def test_bad_and_unknown_versions_are_named(store: Store) -> None:
    bad = _refused(lambda: store.approve("owner", "not-a-sha"))
    assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "model.artifact_sha256: 'not-a-sha' is not a sha256" in str(bad.details())
    unknown = _refused(lambda: store.approve("owner", "f" * 64))
    assert unknown.code() == grpc.StatusCode.NOT_FOUND
    assert "f" * 64 in str(unknown.details())
    request = lineage_pb2.RecordApprovalRequest(
        model=lineage_pb2.ModelVersionRef(model_name="toy", model_version="99")
    )
    stub = store.stub()
    by_name = _refused(
        lambda: stub.RecordApproval(request, timeout=10, metadata=store.auth("owner"))
    )
    assert by_name.code() == grpc.StatusCode.NOT_FOUND
    assert "toy version 99" in str(by_name.details())
    sha = store.register(manifest_json("5"))
    evidence = lineage_pb2.ValidationEvidence(report_sha256="xyz")
    bad_report = _refused(lambda: store.approve("owner", sha, evidence=evidence))
    assert bad_report.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "evidence.report_sha256" in str(bad_report.details())


def test_an_approver_without_the_permission_is_refused_naming_it(store: Store) -> None:
    sha = store.register(manifest_json("6"))
    refused = _refused(lambda: store.approve("analyst", sha))
    assert refused.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "'analyst' lacks 'lineage:approve_models'" in str(refused.details())
    gateway = _refused(lambda: store.approve("gateway", sha))
    assert gateway.code() == grpc.StatusCode.PERMISSION_DENIED
    assert store.status(sha).history == []


def test_approvals_are_in_the_chain_and_an_edit_is_caught(store: Store) -> None:
    sha = store.register(manifest_json("7"))
    kept = store.approve("validator", sha)
    ok = _verify(store.db_url)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    with raw_database(store.db_url) as db:
        db.execute(
            "UPDATE approvals SET principal = ? WHERE approval_id = ?", ("owner", kept.approval_id)
        )
        try:
            tampered = _verify(store.db_url)
        finally:
            db.execute(
                "UPDATE approvals SET principal = ? WHERE approval_id = ?",
                ("validator", kept.approval_id),
            )
    assert tampered.returncode == 1
    assert f"seq {kept.seq} (approval {kept.approval_id}): column principal differs" in (
        tampered.stdout + tampered.stderr
    )
    assert _verify(store.db_url).returncode == 0


def test_open_access_approvals_stop_counting_once_the_store_has_a_policy(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'lineage.db'}"
    demo = start_lineage(url, tmp_path, name="open")
    try:
        stub = lineage_pb2_grpc.LineageServiceStub(grpc.insecure_channel(demo.address))
        text = manifest_json("1")
        sha = stub.RegisterManifest(
            lineage_pb2.RegisterManifestRequest(manifest_json=text), timeout=10
        ).model.artifact_sha256
        for who, role in (("m.owner", "model_owner"), ("v.validator", "validator")):
            approval = stub.RecordApproval(
                lineage_pb2.RecordApprovalRequest(
                    model=lineage_pb2.ModelVersionRef(artifact_sha256=sha),
                    principal=who,
                    roles=[role],
                ),
                timeout=10,
            )
            assert (approval.principal, list(approval.roles), approval.verified_by) == (
                who,
                [role],
                "none",
            )
        request = lineage_pb2.GetApprovalsRequest(artifact_sha256=[sha])
        assert stub.GetApprovals(request, timeout=10).statuses[0].approved
    finally:
        assert demo.stop() == 0
    secured = start_secure(url, tmp_path)
    try:
        status = secured.status(sha)
        assert not status.approved and status.missing == "0 of 2 approvals"
        assert [a.verified_by for a in status.history] == ["none", "none"]
    finally:
        assert secured.process.stop() == 0
