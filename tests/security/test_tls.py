"""The server certificate fetcher: unchanged files cost a stat, a half-done rotation keeps the
old pair, a completed one is served (end to end: tests/gateway/test_gateway_security.py)."""

from __future__ import annotations

import os
from pathlib import Path

import grpc
import pytest
from support.certs import CertificateAuthority

from security.errors import SecurityConfigError
from security.tls import ClientCertificate, RotatingCertificates, ServerTls


def _replace(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def test_a_rotation_is_taken_once_the_key_matches_the_certificate(tmp_path: Path) -> None:
    ca = CertificateAuthority()
    cert, key = ca.server().write(tmp_path, "server")
    fetch = RotatingCertificates(ServerTls(cert, key))
    assert fetch() is None
    new = ca.server()
    _replace(key, new.key_pem)  # half-way: the new key beside the old certificate
    assert fetch() is None and fetch() is None
    _replace(cert, new.cert_pem)
    assert isinstance(fetch(), grpc.ServerCertificateConfiguration)
    assert fetch() is None
    assert fetch.rotations == 1


@pytest.mark.parametrize(
    ("client_certificate", "ca", "message"),
    [
        (ClientCertificate.OPTIONAL, True, "'optional' is not available"),
        (ClientCertificate.REQUIRED, False, "needs a CA bundle"),
    ],
)
def test_client_certificate_settings_that_cannot_work_are_refused(
    tmp_path: Path, client_certificate: ClientCertificate, ca: bool, message: str
) -> None:
    authority = CertificateAuthority()
    cert, key = authority.server().write(tmp_path, "server")
    bundle = authority.write(tmp_path / "ca.crt") if ca else None
    with pytest.raises(SecurityConfigError, match=message):
        ServerTls(cert, key, bundle, client_certificate)
