"""Who a client certificate names: its one SPIFFE ID, or one configured subject field.
(End to end, through a real handshake: tests/gateway/test_gateway_security.py.)"""

from __future__ import annotations

import pytest
from support.certs import CertificateAuthority

from security.errors import AuthenticationFailed, SecurityConfigError
from security.principal import CertificateIdentity, VerifiedBy

CA = CertificateAuthority()


def _auth(pem: bytes) -> dict[str, list[bytes]]:
    return {"x509_pem_cert": [pem]}


def test_the_subject_field_names_the_principal_when_configured() -> None:
    leaf = CA.client(common_name="teller-42", organizational_unit="branch-ops")
    assert CertificateIdentity("subject", "CN").principal(_auth(leaf.cert_pem)) is not None
    principal = CertificateIdentity("subject", "OU").principal(_auth(leaf.cert_pem))
    assert principal is not None
    assert (principal.id, principal.verified_by) == ("branch-ops", VerifiedBy.MTLS)
    with pytest.raises(AuthenticationFailed, match="needs exactly one subject O, has 0"):
        CertificateIdentity("subject", "O").principal(_auth(leaf.cert_pem))


def test_no_certificate_is_no_principal_and_a_bad_source_is_refused() -> None:
    assert CertificateIdentity().principal({}) is None
    with pytest.raises(SecurityConfigError):
        CertificateIdentity("issuer")
    with pytest.raises(SecurityConfigError):
        CertificateIdentity("subject", "emailAddress")


def test_spiffe_ids_among_other_uri_sans_count_alone() -> None:
    leaf = CA.client(("https://bank.example/teller", "spiffe://bank/ns/payments/sa/core"))
    principal = CertificateIdentity().principal(_auth(leaf.cert_pem))
    assert principal is not None and principal.id == "spiffe://bank/ns/payments/sa/core"
