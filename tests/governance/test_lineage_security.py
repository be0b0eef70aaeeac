"""The store's listener behind TLS and the access policy, on real processes with certificates
and signed tokens made here: who may read and write what, what the access log keeps of it, and
that the log is inside the tamper-evident chain.

The policy grants: ``analyst`` reads decisions (not features, not checkpoints), ``auditor``
reads the access log, ``gateway`` writes decisions and route changes, ``reviewer`` reads and
records overrides and outcomes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from lineage_support import BACKENDS, MakeRecord, RawDatabase, database, raw_database
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2
from support.certs import CertificateAuthority
from support.tokens import AUDIENCE, ISSUER, Issuer, bearer
from test_lineage_otlp import decision_span

from governance.access_rules import RULES
from governance.cli import format_table
from governance.redaction_view import WITHHELD
from governance.status import to_status
from lineage.v1 import lineage_pb2, lineage_pb2_grpc
from loadtests.local.topology import ManagedProcess, start_lineage
from security.errors import AuthenticationFailed, PermissionDenied, SecurityConfigError

POLICY = """
lineage:
  - principals: [analyst]
    permissions: [read_decisions]
  - principals: [auditor, "spiffe://bank.test/ns/audit/sa/auditor"]
    permissions: [read_access_log]
  - principals: [gateway, "spiffe://bank.test/ns/scoring/sa/gateway"]
    permissions: [ingest, record_route_changes]
  - principals: [reviewer, "spiffe://bank.test/ns/risk/sa/*"]
    permissions: [read_decisions, read_features, record_overrides, record_outcomes]
"""


@dataclass
class SecureStore:
    process: ManagedProcess
    db_url: str
    ca: Path
    issuer: Issuer
    workdir: Path

    def channel(self) -> grpc.Channel:
        credentials = grpc.ssl_channel_credentials(root_certificates=self.ca.read_bytes())
        return grpc.secure_channel(self.process.address, credentials)

    def token(self, subject: str) -> tuple[tuple[str, str], ...]:
        return bearer(self.issuer.token("k1", subject))


def _write_policy(workdir: Path) -> Path:
    path = workdir / "access-policy.yaml"
    path.write_text(POLICY)
    return path


@pytest.fixture(scope="module", params=BACKENDS)
def secure(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SecureStore]:
    workdir = tmp_path_factory.mktemp("secure-lineage")
    ca = CertificateAuthority()
    cert, key = ca.server("scoregate-lineage").write(workdir, "server")
    issuer = Issuer()
    issuer.rsa("k1")
    jwks = issuer.write_jwks(workdir / "jwks.json")
    with database(request.param, workdir) as url:
        proc = start_lineage(
            url,
            workdir,
            insecure=False,
            extra_args=[
                "--tls-cert-file", str(cert), "--tls-key-file", str(key),
                "--jwt-jwks-file", str(jwks), "--jwt-issuer", ISSUER,
                "--jwt-audience", AUDIENCE, "--jwt-algorithms", "RS256",
                "--access-policy", str(_write_policy(workdir)),
                "--access-log-flush", "0.02",
            ],
        )  # fmt: skip
        try:
            yield SecureStore(proc, url, ca.write(workdir / "ca.crt"), issuer, workdir)
        finally:
            assert proc.stop() == 0, proc.log_tail()


def _export(
    channel: grpc.Channel, records: list[trace_pb2.Span], metadata: tuple[tuple[str, str], ...]
) -> trace_service_pb2.ExportTraceServiceResponse:
    request = trace_service_pb2.ExportTraceServiceRequest(
        resource_spans=[trace_pb2.ResourceSpans(scope_spans=[trace_pb2.ScopeSpans(spans=records)])]
    )
    stub = trace_service_pb2_grpc.TraceServiceStub(channel)
    return stub.Export(request, timeout=10, metadata=metadata)


def _call(fn: object) -> grpc.RpcError:
    try:
        fn()  # type: ignore[operator]
    except grpc.RpcError as e:
        return e
    raise AssertionError("the call was not refused")


def _stored(secure: SecureStore, make_record: MakeRecord) -> str:
    record = make_record()
    with secure.channel() as channel:
        response = _export(channel, [decision_span(record)], secure.token("gateway"))
    assert response.partial_success.rejected_spans == 0
    return record.decision_id


def _access_log(secure: SecureStore, **selection: str) -> list[lineage_pb2.AccessLogEntry]:
    with secure.channel() as channel:
        stub = lineage_pb2_grpc.LineageServiceStub(channel)
        reply = stub.ListAccessLog(
            lineage_pb2.ListAccessLogRequest(**selection),
            timeout=5,
            metadata=secure.token("auditor"),
        )
    return list(reply.entries)


def _wait_for_access(secure: SecureStore, **selection: str) -> list[lineage_pb2.AccessLogEntry]:
    """The access log is written in batches: poll until the entries are there."""
    deadline = time.monotonic() + 10
    while True:
        found = _access_log(secure, **selection)
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_a_call_without_credentials_is_unauthenticated(secure: SecureStore) -> None:
    with secure.channel() as channel:
        stub = lineage_pb2_grpc.LineageServiceStub(channel)
        error = _call(lambda: stub.GetCheckpoint(lineage_pb2.GetCheckpointRequest(), timeout=5))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "authorization: Bearer" in str(error.details())


def test_plaintext_clients_cannot_reach_a_tls_store(secure: SecureStore) -> None:
    with grpc.insecure_channel(secure.process.address) as channel:
        stub = lineage_pb2_grpc.LineageServiceStub(channel)
        error = _call(lambda: stub.GetCheckpoint(lineage_pb2.GetCheckpointRequest(), timeout=5))
    assert error.code() == grpc.StatusCode.UNAVAILABLE


def test_an_analyst_reads_decisions_without_personal_data(
    secure: SecureStore, make_record: MakeRecord
) -> None:
    decision_id = _stored(secure, make_record)
    with secure.channel() as channel:
        stub = lineage_pb2_grpc.LineageServiceStub(channel)
        ask = lineage_pb2.GetDecisionRequest(decision_id=decision_id)
        seen = stub.GetDecision(ask, timeout=5, metadata=secure.token("analyst"))
        full = stub.GetDecision(ask, timeout=5, metadata=secure.token("reviewer"))
        by_entity = lineage_pb2.ListDecisionsRequest(entity_key=full.entity_key)
        refused = _call(
            lambda: stub.ListDecisions(by_entity, timeout=5, metadata=secure.token("analyst"))
        )
        checkpoint = _call(
            lambda: stub.GetCheckpoint(
                lineage_pb2.GetCheckpointRequest(), timeout=5, metadata=secure.token("analyst")
            )
        )
    assert seen.model.name == full.model.name and seen.outputs.score == full.outputs.score
    assert seen.record_sha256 == full.record_sha256
    assert full.entity_key and full.inputs.features
    assert seen.entity_key == "" and not seen.inputs.features
    assert seen.inputs.features_sha256 == full.inputs.features_sha256
    entity = [line for line in format_table(seen).splitlines() if line.startswith("entity ")]
    assert len(entity) == 1 and entity[0].split(None, 1)[1] == f"({WITHHELD})"
    assert WITHHELD not in format_table(full)
    assert refused.code() == grpc.StatusCode.PERMISSION_DENIED
    assert refused.details() == "permission denied: 'analyst' lacks 'lineage:read_features'"
    assert checkpoint.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "'lineage:checkpoints'" in str(checkpoint.details())


def test_an_analysts_read_is_in_the_access_log(
    secure: SecureStore, make_record: MakeRecord
) -> None:
    decision_id = _stored(secure, make_record)
    with secure.channel() as channel:
        stub = lineage_pb2_grpc.LineageServiceStub(channel)
        stub.GetDecision(
            lineage_pb2.GetDecisionRequest(decision_id=decision_id),
            timeout=5,
            metadata=secure.token("analyst"),
        )
    (entry,) = _wait_for_access(secure, decision_id=decision_id, method="GetDecision")
    assert (entry.principal, entry.verified_by, entry.method) == ("analyst", "jwt", "GetDecision")
    assert list(entry.decision_ids) == [decision_id]
    assert (entry.outcome, entry.permission) == ("OK", "read_decisions")
    assert entry.policy_version and entry.seq > 0 and entry.peer.startswith("ipv4:127.0.0.1")

    # A refusal is logged too, naming the permission missing; the query keeps no entity key.
    refused = _wait_for_access(secure, principal="analyst", method="ListDecisions")
    assert refused and refused[-1].outcome == "PERMISSION_DENIED"
    assert refused[-1].permission == "read_features"
    assert "entity_key_sha256" in json.loads(refused[-1].query_json)
    assert 'entity_key"' not in refused[-1].query_json

    # The CLI, over TLS with the auditor's token.
    token = secure.workdir / "auditor.token"
    token.write_text(secure.issuer.token("k1", "auditor"))
    env = {
        **os.environ,
        "SCOREGATE_LINEAGE_CA_FILE": str(secure.ca),
        "SCOREGATE_LINEAGE_TOKEN_FILE": str(token),
    }
    argv = [
        sys.executable, "-m", "governance.cli", "access-log", "--lineage", secure.process.address,
        "--principal", "analyst", "--decision-id", decision_id,
    ]  # fmt: skip
    table = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30)
    assert table.returncode == 0, table.stderr
    assert "GetDecision" in table.stdout and decision_id in table.stdout
    as_json = subprocess.run(
        [*argv, "--format", "json"], env=env, capture_output=True, text=True, timeout=30
    )
    assert json.loads(as_json.stdout)["entries"][0]["principal"] == "analyst"
    anonymous = subprocess.run(
        argv, env={**env, "SCOREGATE_LINEAGE_TOKEN_FILE": ""}, capture_output=True, text=True
    )
    assert anonymous.returncode == 1 and "no credentials" in anonymous.stderr


def test_without_the_ingest_permission_no_decision_is_written(
    secure: SecureStore, make_record: MakeRecord
) -> None:
    record = make_record()
    with secure.channel() as channel:
        denied = _call(lambda: _export(channel, [decision_span(record)], secure.token("analyst")))
        anonymous = _call(lambda: _export(channel, [decision_span(record)], ()))
        stub = lineage_pb2_grpc.LineageServiceStub(channel)
        missing = _call(
            lambda: stub.GetDecision(
                lineage_pb2.GetDecisionRequest(decision_id=record.decision_id),
                timeout=5,
                metadata=secure.token("reviewer"),
            )
        )
    assert denied.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "'lineage:ingest'" in str(denied.details())
    assert anonymous.code() == grpc.StatusCode.UNAUTHENTICATED
    assert missing.code() == grpc.StatusCode.NOT_FOUND
    refusals = _wait_for_access(secure, method="Export", principal="analyst")
    assert refusals and refusals[-1].outcome == "PERMISSION_DENIED"


def test_an_override_names_the_authenticated_reviewer(
    secure: SecureStore, make_record: MakeRecord
) -> None:
    decision_id = _stored(secure, make_record)
    override = lineage_pb2.Override(
        decision_id=decision_id, reviewer="someone.else", new_decision="approve", reason="call"
    )
    outcome = lineage_pb2.Outcome(decision_id=decision_id, label="not_fraud", source="typed in")
    with secure.channel() as channel:
        stub = lineage_pb2_grpc.LineageServiceStub(channel)
        token = secure.token("reviewer")
        got = stub.RecordOverride(
            lineage_pb2.RecordOverrideRequest(override=override), timeout=5, metadata=token
        )
        seen = stub.RecordOutcome(
            lineage_pb2.RecordOutcomeRequest(outcome=outcome), timeout=5, metadata=token
        )
    assert got.reviewer == "reviewer"
    assert seen.source == "reviewer"


def test_a_route_change_names_the_authenticated_initiator(secure: SecureStore) -> None:
    """A canary controller's step is recorded as who its credentials say, not what it sent."""
    change = lineage_pb2.RouteChange(
        config_version="cfg-canary",
        diff_json='{"card-fraud": {"canary": {"weight": [5, 25]}}}',
        source="canary-controller/run-1",
        initiated_by="typed in",
        analysis_json='{"run_id": "run-1", "verdict": "promote"}',
    )
    change.changed_at.FromMicroseconds(1_796_000_000_000_000)
    with secure.channel() as channel:
        stub = lineage_pb2_grpc.LineageServiceStub(channel)
        got = stub.RecordRouteChange(
            lineage_pb2.RecordRouteChangeRequest(change=change),
            timeout=5,
            metadata=secure.token("gateway"),
        )
    assert got.change.initiated_by == "gateway"
    assert '"verdict":"promote"' in got.change.analysis_json


def test_an_edited_access_log_row_is_caught_by_verify(
    secure: SecureStore, make_record: MakeRecord
) -> None:
    decision_id = _stored(secure, make_record)
    with secure.channel() as channel:
        stub = lineage_pb2_grpc.LineageServiceStub(channel)
        stub.GetDecision(
            lineage_pb2.GetDecisionRequest(decision_id=decision_id),
            timeout=5,
            metadata=secure.token("analyst"),
        )
    (entry,) = _wait_for_access(secure, decision_id=decision_id, method="GetDecision")
    verify = [sys.executable, "-m", "governance.cli", "verify", "--db-url", secure.db_url]
    before = subprocess.run(verify, capture_output=True, text=True, timeout=60)
    assert before.returncode == 0, before.stdout + before.stderr
    with raw_database(secure.db_url) as db:
        _rewrite_principal(db, entry.seq, "someone.else")
        try:
            after = subprocess.run(verify, capture_output=True, text=True, timeout=60)
        finally:
            _rewrite_principal(db, entry.seq, "analyst")
    assert after.returncode == 1
    assert f"seq {entry.seq} (access log entry {entry.access_id})" in after.stdout
    assert "principal" in after.stdout


def _rewrite_principal(db: RawDatabase, seq: int, principal: str) -> None:
    db.execute("UPDATE access_log SET principal = ? WHERE seq = ?", (principal, seq))


def test_who_asked_for_a_decision_is_returned_with_it(
    secure: SecureStore, make_record: MakeRecord
) -> None:
    record = make_record(
        principal="spiffe://bank.test/ns/payments/sa/core",
        principal_verified_by="mtls",
        access_policy_version="3f9a0c1d2e4b5a69",
    )
    with secure.channel() as channel:
        assert not _export(channel, [decision_span(record)], secure.token("gateway")).HasField(
            "partial_success"
        )
        stub = lineage_pb2_grpc.LineageServiceStub(channel)
        got = stub.GetDecision(
            lineage_pb2.GetDecisionRequest(decision_id=record.decision_id),
            timeout=5,
            metadata=secure.token("analyst"),
        )
    assert (got.principal, got.principal_verified_by, got.access_policy_version) == (
        "spiffe://bank.test/ns/payments/sa/core",
        "mtls",
        "3f9a0c1d2e4b5a69",
    )
    shown = "spiffe://bank.test/ns/payments/sa/core  (mtls, access policy 3f9a0c1d2e4b5a69)"
    assert shown in format_table(got)


@pytest.mark.parametrize(
    "service",
    [lineage_pb2.DESCRIPTOR.services_by_name["LineageService"],
     trace_service_pb2.DESCRIPTOR.services_by_name["TraceService"]],
    ids=lambda s: s.name,
)  # fmt: skip
def test_every_method_of_the_guarded_services_has_an_access_rule(service: Any) -> None:
    missing = [m.name for m in service.methods if f"/{service.full_name}/{m.name}" not in RULES]
    assert missing == []


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (AuthenticationFailed("bearer token: expired"), grpc.StatusCode.UNAUTHENTICATED),
        (PermissionDenied("analyst", "lineage:purge"), grpc.StatusCode.PERMISSION_DENIED),
        (SecurityConfigError("policy.yaml: bad"), grpc.StatusCode.FAILED_PRECONDITION),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else "",
)
def test_the_security_errors_map_to_their_status(error: Exception, code: grpc.StatusCode) -> None:
    assert to_status(error) == (code, str(error))


def test_with_open_access_calls_are_still_logged(lineage: ManagedProcess) -> None:
    unknown = "0190b3a2-c7d4-7f3e-8a1b-2c3d4e5f6a7b"
    with grpc.insecure_channel(lineage.address) as channel:
        stub = lineage_pb2_grpc.LineageServiceStub(channel)
        missing = _call(
            lambda: stub.GetDecision(lineage_pb2.GetDecisionRequest(decision_id=unknown), timeout=5)
        )
        assert missing.code() == grpc.StatusCode.NOT_FOUND
        deadline = time.monotonic() + 10
        while True:
            ask = lineage_pb2.ListAccessLogRequest(decision_id=unknown, method="GetDecision")
            entries = stub.ListAccessLog(ask, timeout=5).entries
            if entries or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    assert [(e.principal, e.verified_by, e.policy_version, e.outcome) for e in entries] == [
        ("", "none", "", "NOT_FOUND")
    ]
