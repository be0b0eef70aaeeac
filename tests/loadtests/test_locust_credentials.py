"""The Locust kit against a secured gateway: TLS and a bearer token from its options reach every
call (the warm-up's too); without the token every call fails, and the run with it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from load_support import LoadRunner
from support.certs import CertificateAuthority
from support.tokens import AUDIENCE, ISSUER, Issuer

from loadtests.local.topology import ManagedProcess, Topology, start_gateway


@pytest.fixture(scope="module")
def secured_gateway(
    topology: Topology, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ManagedProcess, Path]]:
    d = tmp_path_factory.mktemp("secured")
    ca = CertificateAuthority()
    cert, key = ca.server().write(d, "server")
    ca.write(d / "ca.crt")
    issuer = Issuer()
    issuer.ec("k")
    (d / "token").write_text(issuer.token("k", "svc-loadtest", lifetime_s=600))
    policy = {"scoring": [{"principals": ["svc-loadtest"], "decision_points": ["card-fraud"]}]}
    (d / "policy.yaml").write_text(yaml.safe_dump(policy))
    gateway = start_gateway(
        topology.workdir / "routes.yaml", topology.model_dir, d, name="secured", insecure=False,
        extra_args=[
            "--tls-cert-file", str(cert), "--tls-key-file", str(key),
            "--access-policy", str(d / "policy.yaml"),
            "--jwt-jwks-file", str(issuer.write_jwks(d / "jwks.json")),
            "--jwt-issuer", ISSUER, "--jwt-audience", AUDIENCE, "--jwt-algorithms", "ES256",
        ],
    )  # fmt: skip
    try:
        yield gateway, d
    finally:
        gateway.stop()


def test_the_kit_calls_a_secured_gateway_with_its_credentials(
    secured_gateway: tuple[ManagedProcess, Path], run_scenario: LoadRunner
) -> None:
    gateway, d = secured_gateway
    tls = ("--tls-ca-file", str(d / "ca.crt"))
    run = run_scenario(
        "steady", gateway.address, "-u", "2", "-t", "2s", *tls,
        "--bearer-token-file", str(d / "token"),
    )  # fmt: skip
    assert run.code == 0, run.output
    assert run.summary["requests"] > 0 and run.summary["failures"] == 0, run.output
    refused = run_scenario("steady", gateway.address, "-u", "1", "-t", "1s", *tls)
    assert refused.code == 1
    assert refused.summary["failures"] == refused.summary["requests"] > 0
