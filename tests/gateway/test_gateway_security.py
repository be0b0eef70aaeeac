"""The gateway's TLS, authentication and authorisation, on real processes with real credentials.

Two gateways over one runtime and one lineage store, both over TLS with certificates made here:
``tokens`` takes bearer JWTs (signed here, JWKS in a file) and no client certificates, so that a
call can arrive with no credentials at all; ``mtls`` requires client certificates and takes the
caller's SPIFFE ID. Each refusal gets the status docs/security.md documents; an allowed call is
recorded with its principal and the policy version; certificates, keys and the policy are
rotated under the running processes. Clients are gRPC's, with default options.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from support.certs import CertificateAuthority, Leaf
from support.stored import get_when_stored
from support.tokens import AUDIENCE, ISSUER, Issuer, bearer, unsigned_token

from lineage.v1 import lineage_pb2_grpc
from lineage.v1.record import DecisionRecord, record_from_json
from loadtests.local.topology import ManagedProcess, start_gateway, start_lineage
from runtimes.training.datasets import sample_requests
from scoring.v1 import scoring_pb2, scoring_pb2_grpc
from scoring.v1.requests import score_batch_request, score_request
from security.errors import SecurityConfigError
from security.policy import policy_version
from security.tls import ClientTls, open_channel

PAYMENTS = "spiffe://bank/ns/payments/sa/core"
MARKETING = "spiffe://bank/ns/marketing/sa/campaigns"
CREDIT_SERVICE = "svc-credit-origination"
LATECOMER = "svc-latecomer"

POLICY: dict[str, Any] = {
    "scoring": [
        {
            "principals": ["spiffe://bank/ns/payments/sa/*"],
            "decision_points": ["card-fraud"],
            "description": "payments scores card authorisations",
        },
        {"principals": [CREDIT_SERVICE], "decision_points": ["credit-risk"], "pin_versions": True},
        {"principals": ["svc-fraud-ops"], "decision_points": ["card-fraud"]},
    ],
    "lineage": [{"principals": ["spiffe://bank/ns/risk/*"], "permissions": ["read_decisions"]}],
}


def _replace(path: Path, data: bytes) -> None:
    """Atomically, as a Secret or ConfigMap update swaps its files."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _write_leaf(leaf: Leaf, cert: Path, key: Path) -> None:
    # The key first: a handshake between the two writes sees a mismatched pair and keeps the old.
    _replace(key, leaf.key_pem)
    _replace(cert, leaf.cert_pem)


@dataclass
class Secured:
    ca: CertificateAuthority
    other_ca: CertificateAuthority
    issuer: Issuer
    dir: Path
    tokens: ManagedProcess
    mtls: ManagedProcess
    lineage: ManagedProcess
    db: Path
    policy: Path

    def client_credentials(
        self, leaf: Leaf | None = None, ca: CertificateAuthority | None = None
    ) -> grpc.ChannelCredentials:
        key = (
            {}
            if leaf is None
            else {"private_key": leaf.key_pem, "certificate_chain": leaf.cert_pem}
        )
        return grpc.ssl_channel_credentials(root_certificates=(ca or self.ca).cert_pem, **key)


@pytest.fixture(scope="module")
def secured(
    runtime: ManagedProcess,
    model_dir: Path,
    demo_config: Callable[[str], dict[str, Any]],
    write_routes: Callable[[Path, dict[str, Any]], Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Secured]:
    d = tmp_path_factory.mktemp("security")
    ca, other_ca = CertificateAuthority(), CertificateAuthority("an unknown CA")
    ca_file = ca.write(d / "ca.crt")
    issuer = Issuer()
    issuer.rsa("rsa-1")
    issuer.ec("ec-1")
    jwks = issuer.write_jwks(d / "jwks.json")
    policy = d / "policy.yaml"
    policy.write_text(yaml.safe_dump(POLICY, sort_keys=False))
    routes = write_routes(d / "routes.yaml", demo_config(runtime.address))
    db = d / "lineage.db"
    lineage = start_lineage(db, d)
    started: list[ManagedProcess] = [lineage]
    try:
        common = ["--access-policy", str(policy), "--reload-interval-s", "0.2"]
        cert, key = ca.server().write(d, "tokens-server")
        tokens = start_gateway(
            routes, model_dir, d, name="gateway-tokens", insecure=False,
            lineage_endpoint=lineage.address, outbox_dir=d / "outbox-tokens",
            extra_args=[
                *common, "--tls-cert-file", str(cert), "--tls-key-file", str(key),
                "--jwt-jwks-file", str(jwks), "--jwt-issuer", ISSUER, "--jwt-audience", AUDIENCE,
                "--jwt-algorithms", "RS256,ES256",
            ],
        )  # fmt: skip
        started.append(tokens)
        cert, key = ca.server().write(d, "mtls-server")
        mtls = start_gateway(
            routes, model_dir, d, name="gateway-mtls", insecure=False,
            lineage_endpoint=lineage.address, outbox_dir=d / "outbox-mtls",
            extra_args=[
                *common, "--tls-cert-file", str(cert), "--tls-key-file", str(key),
                "--tls-ca-file", str(ca_file), "--tls-client-certificate", "required",
            ],
        )  # fmt: skip
        started.append(mtls)
        yield Secured(ca, other_ca, issuer, d, tokens, mtls, lineage, db, policy)
    finally:
        for proc in reversed(started):
            proc.stop()


def _features(point: str, seed: int = 1) -> dict[str, Any]:
    return dict(sample_requests(point, 1, seed=seed)[0])


def _request(point: str = "card-fraud", n: int = 0, version: str = "") -> scoring_pb2.ScoreRequest:
    return score_request(f"sec-{point}-{n}-{time.time_ns()}", point, f"entity-{n}",
                         _features(point, n), version)  # fmt: skip


async def _score(
    address: str,
    credentials: grpc.ChannelCredentials,
    request: scoring_pb2.ScoreRequest,
    metadata: tuple[tuple[str, str], ...] = (),
) -> scoring_pb2.ScoreResponse:
    async with grpc.aio.secure_channel(address, credentials) as channel:
        stub = scoring_pb2_grpc.ScoringServiceStub(channel)
        response: scoring_pb2.ScoreResponse = await stub.Score(
            request, metadata=metadata or None, timeout=10
        )
        return response


async def _refused(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


async def _until(check: Callable[[], Awaitable[bool]], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, "the change did not take effect in time"
        await asyncio.sleep(0.1)


def _stored_record(db: Path, decision_id: str) -> tuple[DecisionRecord, str]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        (text,) = conn.execute(
            "SELECT record_json FROM decisions WHERE decision_id = ?", (decision_id,)
        ).fetchone()
    return record_from_json(text), hashlib.sha256(text.encode()).hexdigest()


async def _recorded(s: Secured, decision_id: str) -> DecisionRecord:
    """The record as the lineage store keeps it: GetDecision (whose proto does not carry the
    caller yet) proves it is stored, and its record_sha256 ties it to the stored JSON."""
    async with grpc.aio.insecure_channel(s.lineage.address) as channel:
        stored = await get_when_stored(lineage_pb2_grpc.LineageServiceStub(channel), decision_id)
    record, sha = _stored_record(s.db, decision_id)
    assert sha == stored.record_sha256
    return record


# -- bearer tokens ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("none", "no credentials: send an 'authorization: Bearer <token>' header"),
        ("expired", "bearer token: expired"),
        ("other audience", "bearer token: not for this audience ('scoregate')"),
        ("alg none", "bearer token: algorithm 'none' not accepted (accepted: RS256, ES256)"),
        ("other issuer", "bearer token: issuer not accepted"),
        ("not yet valid", "bearer token: not valid yet (nbf)"),
        ("forged signature", "bearer token: signature does not verify"),
        ("unknown key", "bearer token: signed with an unknown key (kid 'rsa-unpublished')"),
        ("not bearer", "authorization: not a 'Bearer <token>' header"),
        ("garbage", "bearer token: malformed"),
    ],
)
async def test_a_call_without_valid_credentials_is_unauthenticated_and_told_why(
    secured: Secured, case: str, message: str
) -> None:
    issuer = secured.issuer
    if "rsa-unpublished" not in issuer.keys:
        issuer.rsa("rsa-unpublished")
    good = issuer.token("rsa-1", "svc-fraud-ops")
    header, payload, _ = good.split(".")
    other = issuer.token("ec-1", "svc-fraud-ops").split(".")[2]
    metadata = {
        "none": (),
        "expired": bearer(issuer.token("rsa-1", "svc-fraud-ops", lifetime_s=-120)),
        "other audience": bearer(issuer.token("rsa-1", "svc-fraud-ops", audience="another-api")),
        "alg none": bearer(unsigned_token("svc-fraud-ops")),
        "other issuer": bearer(issuer.token("ec-1", "svc-fraud-ops", issuer="https://evil.test")),
        "not yet valid": bearer(issuer.token("ec-1", "svc-fraud-ops", not_before_s=600)),
        "forged signature": bearer(f"{header}.{payload}.{other}"),
        "unknown key": bearer(issuer.token("rsa-unpublished", "svc-fraud-ops")),
        "not bearer": (("authorization", "Basic c3ZjOnB3"),),
        "garbage": bearer("not-a-jwt"),
    }[case]
    error = await _refused(
        _score(secured.tokens.address, secured.client_credentials(), _request(), metadata)
    )
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error.details() == message


async def test_an_authenticated_principal_outside_the_policy_is_denied_naming_the_permission(
    secured: Secured,
) -> None:
    token = secured.issuer.token("ec-1", CREDIT_SERVICE)
    error = await _refused(
        _score(secured.tokens.address, secured.client_credentials(), _request(), bearer(token))
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error.details() == f"permission denied: {CREDIT_SERVICE!r} lacks 'score:card-fraud'"
    # Pinning is its own permission: svc-fraud-ops may score card-fraud, not pin its versions.
    token = secured.issuer.token("rsa-1", "svc-fraud-ops")
    error = await _refused(
        _score(secured.tokens.address, secured.client_credentials(),
               _request(version="2"), bearer(token))
    )  # fmt: skip
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "'pin:card-fraud'" in error.details()


async def test_an_allowed_token_caller_is_scored_and_recorded_with_its_identity(
    secured: Secured,
) -> None:
    token = secured.issuer.token("rsa-1", CREDIT_SERVICE)
    response = await _score(
        secured.tokens.address, secured.client_credentials(), _request("credit-risk", 3, "1"),
        bearer(token),
    )  # fmt: skip
    assert response.model_version == "1" and response.arm == "pinned"
    record = await _recorded(secured, response.decision_id)
    assert record.principal == CREDIT_SERVICE
    assert record.principal_verified_by == "jwt"
    assert record.access_policy_version == policy_version(secured.policy.read_bytes())


async def test_score_batch_is_authorised_like_score(secured: Secured) -> None:
    rows = [(f"b-{i}-{time.time_ns()}", f"e-{i}", _features("card-fraud", i)) for i in range(3)]
    request = score_batch_request("card-fraud", rows)
    async with grpc.aio.secure_channel(secured.tokens.address, secured.client_credentials()) as ch:
        stub = scoring_pb2_grpc.ScoringServiceStub(ch)
        denied = await _refused(
            stub.ScoreBatch(
                request, metadata=bearer(secured.issuer.token("rsa-1", "x")), timeout=10
            )
        )
        assert denied.code() == grpc.StatusCode.PERMISSION_DENIED
        token = secured.issuer.token("rsa-1", "svc-fraud-ops")
        response = await stub.ScoreBatch(request, metadata=bearer(token), timeout=10)
    assert [r.WhichOneof("result") for r in response.results] == ["decision"] * 3
    record = await _recorded(secured, response.results[0].decision.decision_id)
    assert (record.principal, record.principal_verified_by) == ("svc-fraud-ops", "jwt")


async def test_health_and_reflection_need_no_credentials(secured: Secured) -> None:
    async with grpc.aio.secure_channel(secured.tokens.address, secured.client_credentials()) as ch:
        health = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest())
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(ch)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        async for answer in reflection.ServerReflectionInfo(iter([request])):
            names = {s.name for s in answer.list_services_response.service}
            assert "scoring.v1.ScoringService" in names
            break


async def test_a_rotated_jwks_takes_effect_without_a_restart(secured: Secured) -> None:
    issuer, jwks = secured.issuer, secured.dir / "jwks.json"
    issuer.rsa("rsa-2")
    issuer.write_jwks(jwks, ["rsa-1", "ec-1", "rsa-2"])
    new = issuer.token("rsa-2", "svc-fraud-ops")
    credentials = secured.client_credentials()

    async def accepted(token: str) -> bool:
        try:
            await _score(secured.tokens.address, credentials, _request(), bearer(token))
        except grpc.aio.AioRpcError as e:
            assert e.code() == grpc.StatusCode.UNAUTHENTICATED
            return False
        return True

    await _until(lambda: accepted(new))
    # The old key retired: tokens it signed stop verifying, cached or not.
    old = issuer.token("rsa-1", "svc-fraud-ops")
    assert await accepted(old)
    issuer.write_jwks(jwks, ["ec-1", "rsa-2"])

    async def refused() -> bool:
        return not await accepted(old)

    await _until(refused)
    assert await accepted(new)
    issuer.write_jwks(jwks, ["rsa-1", "ec-1", "rsa-2"])
    await _until(lambda: accepted(old))


async def test_a_policy_reload_changes_what_is_allowed(secured: Secured) -> None:
    credentials = secured.client_credentials()
    token = secured.issuer.token("ec-1", LATECOMER)

    async def allowed() -> bool:
        try:
            await _score(secured.tokens.address, credentials, _request(), bearer(token))
        except grpc.aio.AioRpcError as e:
            assert e.code() == grpc.StatusCode.PERMISSION_DENIED
            return False
        return True

    assert not await allowed()
    original = secured.policy.read_bytes()
    granted = yaml.safe_load(original)
    granted["scoring"].append({"principals": [LATECOMER], "decision_points": ["card-fraud"]})
    try:
        _replace(secured.policy, yaml.safe_dump(granted).encode())
        await _until(allowed)
        # A policy that does not validate is refused; the one in force stays.
        _replace(secured.policy, b"scoring:\n  - principals: [x]\n    decision_point: [y]\n")
        await asyncio.sleep(1.0)
        assert await allowed()
    finally:
        _replace(secured.policy, original)
    await _until(lambda: _negated(allowed))
    assert "invalid access policy" in secured.tokens.log_tail(200)
    assert "scoring[0].decision_point: Extra inputs are not permitted" in secured.tokens.log_tail(
        200
    )


async def _negated(check: Callable[[], Awaitable[bool]]) -> bool:
    return not await check()


async def test_a_rotated_server_certificate_is_served_without_a_restart(secured: Secured) -> None:
    d = secured.dir
    token = secured.issuer.token("rsa-1", "svc-fraud-ops")
    new_ca = CertificateAuthority("the rotated CA")
    old_leaf = Leaf((d / "tokens-server.crt").read_bytes(), (d / "tokens-server.key").read_bytes())
    try:
        _write_leaf(new_ca.server(), d / "tokens-server.crt", d / "tokens-server.key")

        async def served_by_new_ca() -> bool:
            try:
                await _score(secured.tokens.address, secured.client_credentials(ca=new_ca),
                             _request(), bearer(token))  # fmt: skip
            except grpc.aio.AioRpcError as e:
                assert e.code() == grpc.StatusCode.UNAVAILABLE
                return False
            return True

        await _until(served_by_new_ca)
        # New connections trusting only the old CA are refused now.
        error = await _refused(
            _score(secured.tokens.address, secured.client_credentials(), _request(), bearer(token))
        )
        assert error.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        _write_leaf(old_leaf, d / "tokens-server.crt", d / "tokens-server.key")
    await _until(lambda: _negated(served_by_new_ca))


# -- client certificates ---------------------------------------------------------------------


async def test_an_allowed_spiffe_client_certificate_is_scored_and_recorded(
    secured: Secured,
) -> None:
    leaf = secured.ca.client((PAYMENTS,))
    response = await _score(secured.mtls.address, secured.client_credentials(leaf), _request())
    record = await _recorded(secured, response.decision_id)
    assert (record.principal, record.principal_verified_by) == (PAYMENTS, "mtls")
    assert record.access_policy_version == policy_version(secured.policy.read_bytes())


async def test_a_certificate_outside_the_policy_is_denied(secured: Secured) -> None:
    leaf = secured.ca.client((MARKETING,))
    error = await _refused(
        _score(secured.mtls.address, secured.client_credentials(leaf), _request())
    )
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error.details() == f"permission denied: {MARKETING!r} lacks 'score:card-fraud'"


async def test_a_certificate_naming_no_single_spiffe_id_is_unauthenticated(
    secured: Secured,
) -> None:
    for ids in ((), (PAYMENTS, "spiffe://bank/ns/payments/sa/other")):
        leaf = secured.ca.client(ids)
        error = await _refused(
            _score(secured.mtls.address, secured.client_credentials(leaf), _request())
        )
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
        assert error.details() == (
            f"client certificate: needs exactly one SPIFFE URI SAN, has {len(ids)}"
        )


async def test_a_certificate_from_an_unknown_ca_or_none_fails_the_handshake(
    secured: Secured,
) -> None:
    for leaf in (secured.other_ca.client((PAYMENTS,)), None):
        error = await _refused(
            _score(secured.mtls.address, secured.client_credentials(leaf), _request())
        )
        # The TLS handshake fails before any call exists: gRPC reports the connection refused.
        assert error.code() == grpc.StatusCode.UNAVAILABLE


async def test_the_gateways_own_client_tls_reaches_a_mutual_tls_server(secured: Secured) -> None:
    """``ClientTls`` as the gateway's runtime and lineage channels use it, against a server that
    requires client certificates (the mTLS gateway stands in for a TLS-terminating runtime)."""
    cert, key = secured.ca.client((PAYMENTS,)).write(secured.dir, "own-client")
    tls = ClientTls(secured.dir / "ca.crt", cert, key)
    async with open_channel(secured.mtls.address, tls) as channel:
        stub = scoring_pb2_grpc.ScoringServiceStub(channel)
        response = await stub.Score(_request(), timeout=10)
    assert response.decision_id
    with pytest.raises(SecurityConfigError, match="does not belong to the certificate"):
        ClientTls(
            secured.dir / "ca.crt", cert, secured.dir / "mtls-server.key"
        ).channel_credentials()


# -- start-up ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        ([], "no TLS certificate: set --tls-cert-file and --tls-key-file, or --plaintext true"),
        (["--plaintext", "true"], "no access policy: set --access-policy, or --open-access true"),
        (["--plaintext", "true", "--access-policy", "{policy}"],
         "an access policy needs authenticated callers"),
        (["--tls-cert-file", "{cert}", "--tls-key-file", "{cert}", "--open-access", "true"],
         "not an unencrypted PEM private key"),
        (["--tls-cert-file", "{cert}", "--tls-key-file", "{key}", "--tls-client-certificate",
          "optional", "--tls-ca-file", "{ca}", "--open-access", "true"],
         "client certificates 'optional' is not available"),
        (["--plaintext", "true", "--access-policy", "{policy}", "--jwt-jwks-file", "{jwks}",
          "--jwt-issuer", ISSUER, "--jwt-audience", AUDIENCE, "--jwt-algorithms", "HS256,none"],
         "algorithm(s) HS256, none not allowed"),
        (["--plaintext", "true", "--access-policy", "{bad_policy}", "--jwt-jwks-file", "{jwks}",
          "--jwt-issuer", ISSUER, "--jwt-audience", AUDIENCE, "--jwt-algorithms", "RS256"],
         "scoring[0].principals: Field required"),
    ],
)  # fmt: skip
def test_a_gateway_with_unsafe_or_broken_security_settings_refuses_to_start(
    secured: Secured, model_dir: Path, args: list[str], reason: str
) -> None:
    d = secured.dir
    (d / "bad-policy.yaml").write_text("scoring:\n  - decision_points: [x]\n")
    files = {
        "cert": d / "tokens-server.crt", "key": d / "tokens-server.key", "ca": d / "ca.crt",
        "policy": secured.policy, "jwks": d / "jwks.json", "bad_policy": d / "bad-policy.yaml",
    }  # fmt: skip
    argv = [a.format(**files) for a in args]
    done = subprocess.run(
        [sys.executable, "-m", "gateway.server", "--routes", str(d / "routes.yaml"),
         "--model-dir", str(model_dir), "--port", "0", *argv],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert reason in done.stderr
