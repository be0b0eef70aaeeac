"""The store's TLS and access control, built once from its settings at start-up.

What is refused here exits the process with status 2 before it serves: no certificate and no
explicit ``--plaintext``, no access policy and no explicit ``--open-access``, a policy with no
way to authenticate its principals, unreadable or mismatched TLS files, an unusable key set.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from governance.access import StoreAccess
from governance.settings import LineageSettings
from security.authenticator import Authenticator
from security.errors import SecurityConfigError
from security.jwks import JwksKeys
from security.policy import load_policy
from security.policy_reload import PolicyWatcher
from security.principal import CertificateIdentity
from security.tls import ClientCertificate, ServerTls
from security.tokens import TokenSettings, TokenVerifier


@dataclass(frozen=True)
class StoreSecurity:
    server_tls: ServerTls | None
    """None: plaintext (``--plaintext``)."""
    access: StoreAccess


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _server_tls(s: LineageSettings) -> ServerTls | None:
    if s.tls_cert_file is None and s.tls_key_file is None:
        if not s.plaintext:
            raise SecurityConfigError(
                "no TLS certificate: set --tls-cert-file and --tls-key-file, or --plaintext "
                "true to serve without TLS (demo and tests only)"
            )
        return None
    if s.plaintext:
        raise SecurityConfigError("--plaintext and a TLS certificate: choose one")
    if s.tls_cert_file is None or s.tls_key_file is None:
        raise SecurityConfigError("TLS needs both --tls-cert-file and --tls-key-file")
    tls = ServerTls(
        s.tls_cert_file, s.tls_key_file, s.tls_ca_file, ClientCertificate(s.tls_client_certificate)
    )
    tls.load()  # refuse bad files now, not at the first handshake
    return tls


def _tokens(s: LineageSettings) -> TokenVerifier | None:
    if s.jwt_jwks_file is None and not s.jwt_jwks_url:
        return None
    settings = TokenSettings(
        issuer=s.jwt_issuer,
        audience=s.jwt_audience,
        algorithms=tuple(a.strip() for a in s.jwt_algorithms.split(",") if a.strip()),
        leeway_s=s.jwt_leeway_s,
        principal_claim=s.jwt_principal_claim,
    )
    return TokenVerifier(settings, JwksKeys(file=s.jwt_jwks_file, url=s.jwt_jwks_url))


def _access(s: LineageSettings, tls: ServerTls | None) -> StoreAccess:
    if s.access_policy is None:
        if not s.open_access:
            raise SecurityConfigError(
                "no access policy: set --access-policy, or --open-access true to let every "
                "caller read and write all lineage (demo and tests only)"
            )
        return StoreAccess()
    if s.open_access:
        raise SecurityConfigError("--open-access and --access-policy: choose one")
    certificates = None
    if tls is not None and tls.client_certificate is ClientCertificate.REQUIRED:
        certificates = CertificateIdentity(s.certificate_identity, s.certificate_subject_field)
    tokens = _tokens(s)
    if certificates is None and tokens is None:
        raise SecurityConfigError(
            "an access policy needs authenticated callers: require client certificates "
            "(--tls-client-certificate required) or accept bearer tokens (--jwt-jwks-file/url)"
        )
    return StoreAccess(
        Authenticator(certificates=certificates, tokens=tokens),
        PolicyWatcher(s.access_policy, load_policy(s.access_policy)),
    )


def store_security(s: LineageSettings) -> StoreSecurity:
    """Everything above from ``s``; SecurityConfigError names what is wrong."""
    tls = _server_tls(s)
    return StoreSecurity(tls, _access(s, tls))
