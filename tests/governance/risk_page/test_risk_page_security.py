"""The risk page of a store behind TLS, bearer tokens and the access policy, on real processes:
HTTPS with the store's certificate, 401 without a token, 403 naming the permission a page needs,
the decision page without inputs for a caller without ``read_features``, and every view, allowed
or refused, in the same access log as the gRPC calls.

The policy is the store's security tests': ``analyst`` reads decisions (not features),
``reviewer`` reads decisions and features, ``auditor`` reads the access log, ``gateway`` ingests.
"""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Iterator

import httpx
import pytest
from lineage_support import MakeRecord
from lineage_support import make_record as build_record
from risk_page_support import error_text, listed_ids, page_url
from support.certs import CertificateAuthority
from support.tokens import AUDIENCE, ISSUER, Issuer
from test_lineage_otlp import decision_span
from test_lineage_security import POLICY, SecureStore, _export

from lineage.v1 import lineage_pb2, lineage_pb2_grpc
from lineage.v1.record import DecisionRecord
from loadtests.local.topology import start_lineage


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureStore]:
    workdir = tmp_path_factory.mktemp("secure-page")
    ca = CertificateAuthority()
    cert, key = ca.server("scoregate-lineage").write(workdir, "server")
    issuer = Issuer()
    issuer.rsa("k1")
    jwks = issuer.write_jwks(workdir / "jwks.json")
    policy = workdir / "access-policy.yaml"
    policy.write_text(POLICY)
    url = f"sqlite:///{workdir / 'lineage.db'}"
    proc = start_lineage(
        url,
        workdir,
        insecure=False,
        extra_args=[
            "--tls-cert-file", str(cert), "--tls-key-file", str(key),
            "--jwt-jwks-file", str(jwks), "--jwt-issuer", ISSUER,
            "--jwt-audience", AUDIENCE, "--jwt-algorithms", "RS256",
            "--access-policy", str(policy), "--access-log-flush", "0.02",
            "--web-port", "0",
        ],
    )  # fmt: skip
    try:
        yield SecureStore(proc, url, ca.write(workdir / "ca.crt"), issuer, workdir)
    finally:
        assert proc.stop() == 0, proc.log_tail()


@pytest.fixture(scope="module")
def stored(secure: SecureStore) -> DecisionRecord:
    make: MakeRecord = build_record
    record = make(entity_key="cust-secret-77")
    with secure.channel() as channel:
        reply = _export(channel, [decision_span(record)], secure.token("gateway"))
    assert reply.partial_success.rejected_spans == 0
    return record


def _get(secure: SecureStore, path: str, who: str | None, **params: str) -> httpx.Response:
    headers = {} if who is None else {"Authorization": f"Bearer {secure.issuer.token('k1', who)}"}
    return httpx.get(
        page_url(secure.process) + path,
        params=params,
        headers=headers,
        verify=ssl.create_default_context(cafile=secure.ca),
        timeout=10,
    )


def _access_log(
    secure: SecureStore, method: str, outcomes: set[str]
) -> list[lineage_pb2.AccessLogEntry]:
    """The access log is written in batches: polls until entries of ``method`` with each of
    ``outcomes`` are there."""
    deadline = time.monotonic() + 10
    while True:
        with secure.channel() as channel:
            reply = lineage_pb2_grpc.LineageServiceStub(channel).ListAccessLog(
                lineage_pb2.ListAccessLogRequest(method=method),
                timeout=5,
                metadata=secure.token("auditor"),
            )
        if outcomes <= {e.outcome for e in reply.entries} or time.monotonic() > deadline:
            return list(reply.entries)
        time.sleep(0.05)


def test_the_page_is_https_with_the_stores_certificate(secure: SecureStore) -> None:
    assert page_url(secure.process).startswith("https://127.0.0.1:")
    with pytest.raises(httpx.ConnectError):
        httpx.get(page_url(secure.process), timeout=5)  # the system's CAs do not know it
    plain = page_url(secure.process).replace("https://", "http://")
    with pytest.raises(httpx.HTTPError):
        httpx.get(plain, timeout=5)


def test_a_view_without_a_token_is_401(secure: SecureStore) -> None:
    response = _get(secure, "", None, decision_point="card-fraud")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "Bearer" in error_text(response.text)


def test_an_invalid_token_is_401(secure: SecureStore) -> None:
    response = httpx.get(
        page_url(secure.process),
        headers={"Authorization": "Bearer not.a.token"},
        verify=ssl.create_default_context(cafile=secure.ca),
        timeout=10,
    )
    assert response.status_code == 401


def test_searching_by_entity_needs_read_features(
    secure: SecureStore, stored: DecisionRecord
) -> None:
    refused = _get(secure, "", "analyst", entity_key=stored.entity_key)
    assert refused.status_code == 403
    assert "lineage:read_features" in error_text(refused.text)
    allowed = _get(secure, "", "reviewer", entity_key=stored.entity_key)
    assert allowed.status_code == 200
    assert listed_ids(allowed.text) == [stored.decision_id]


def test_a_principal_without_read_decisions_is_403(secure: SecureStore) -> None:
    for path in ("", "timeline", "drift", "decisions/0190f0c2-1b2a-7000-8000-000000000000"):
        response = _get(secure, path, "auditor", decision_point="card-fraud")
        assert response.status_code == 403, path
        assert "lineage:read_decisions" in error_text(response.text)


def test_the_decision_page_withholds_inputs_without_read_features(
    secure: SecureStore, stored: DecisionRecord
) -> None:
    analyst = _get(secure, f"decisions/{stored.decision_id}", "analyst")
    assert analyst.status_code == 200
    assert stored.model_sha256 in analyst.text and "R12" in analyst.text
    assert "merchant_category" not in analyst.text
    assert stored.entity_key not in analyst.text
    assert "need the read_features permission" in analyst.text
    reviewer = _get(secure, f"decisions/{stored.decision_id}", "reviewer")
    assert "merchant_category" in reviewer.text and stored.entity_key in reviewer.text


def test_replay_needs_read_features(secure: SecureStore, stored: DecisionRecord) -> None:
    token = secure.issuer.token("k1", "analyst")
    response = httpx.post(
        page_url(secure.process) + f"decisions/{stored.decision_id}/replay",
        headers={"Authorization": f"Bearer {token}"},
        verify=ssl.create_default_context(cafile=secure.ca),
        timeout=10,
    )
    assert response.status_code == 403
    assert "lineage:read_features" in error_text(response.text)


def test_every_view_is_in_the_access_log(secure: SecureStore, stored: DecisionRecord) -> None:
    ok = _get(secure, f"decisions/{stored.decision_id}", "reviewer")
    refused = _get(secure, "", "analyst", entity_key=stored.entity_key)
    nobody = _get(secure, f"decisions/{stored.decision_id}", None)
    assert (ok.status_code, refused.status_code, nobody.status_code) == (200, 403, 401)
    views = _access_log(secure, "web.decision", {"OK", "UNAUTHENTICATED"})
    by_outcome = {(e.principal, e.outcome): e for e in views}
    seen = by_outcome[("reviewer", "OK")]
    assert list(seen.decision_ids) == [stored.decision_id]
    assert seen.verified_by == "jwt" and seen.peer.startswith("ipv4:127.0.0.1:")
    assert seen.permission == "read_decisions" and seen.policy_version
    assert ("", "UNAUTHENTICATED") in by_outcome
    searches = _access_log(secure, "web.search", {"PERMISSION_DENIED"})
    denied = next(e for e in searches if e.outcome == "PERMISSION_DENIED")
    assert denied.principal == "analyst" and denied.permission == "read_features"
    query = json.loads(denied.query_json)
    assert stored.entity_key not in denied.query_json
    assert "entity_key_sha256" in query
