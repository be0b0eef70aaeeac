"""A server's listener security from its settings: what the gateway and the lineage store
share, built once at start-up.

Either server's settings (pydantic, its own prefix) carry the same fields; ``ListenerSettings``
names them. What is refused raises SecurityConfigError, which the servers turn into exit status
2 before serving: no certificate and no explicit ``plaintext``, no access policy and no explicit
``open_access``, a policy with no way to authenticate its principals, unreadable or mismatched
TLS files, an unusable key set.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Protocol

from security.authenticator import Authenticator
from security.errors import SecurityConfigError
from security.jwks import JwksKeys
from security.policy import load_policy
from security.policy_reload import PolicyWatcher
from security.principal import CertificateIdentity
from security.tls import ClientCertificate, ServerTls
from security.tokens import TokenSettings, TokenVerifier


class ListenerSettings(Protocol):
    """The settings both servers name alike (docs/security.md)."""

    @property
    def plaintext(self) -> bool: ...
    @property
    def tls_cert_file(self) -> Path | None: ...
    @property
    def tls_key_file(self) -> Path | None: ...
    @property
    def tls_ca_file(self) -> Path | None: ...
    @property
    def tls_client_certificate(self) -> str: ...
    @property
    def certificate_identity(self) -> str: ...
    @property
    def certificate_subject_field(self) -> str: ...
    @property
    def jwt_jwks_file(self) -> Path | None: ...
    @property
    def jwt_jwks_url(self) -> str: ...
    @property
    def jwt_issuer(self) -> str: ...
    @property
    def jwt_audience(self) -> str: ...
    @property
    def jwt_algorithms(self) -> str: ...
    @property
    def jwt_leeway_s(self) -> float: ...
    @property
    def jwt_principal_claim(self) -> str: ...
    @property
    def access_policy(self) -> Path | None: ...
    @property
    def open_access(self) -> bool: ...


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def server_tls(s: ListenerSettings) -> ServerTls | None:
    """The listener's TLS; None when serving plaintext (only with ``plaintext`` set)."""
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


def token_verifier(s: ListenerSettings) -> TokenVerifier | None:
    """Bearer tokens' verifier, when a JWKS is configured."""
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


def policy_access(
    s: ListenerSettings, tls: ServerTls | None, open_means: str
) -> tuple[Authenticator, PolicyWatcher] | None:
    """Who callers are and what the policy lets them do; None under explicit open access.
    ``open_means`` says what open access allows on this server (for the refusal's message)."""
    if s.access_policy is None:
        if not s.open_access:
            raise SecurityConfigError(
                f"no access policy: set --access-policy, or --open-access true to let every "
                f"caller {open_means} (demo and tests only)"
            )
        return None
    if s.open_access:
        raise SecurityConfigError("--open-access and --access-policy: choose one")
    certificates = None
    if tls is not None and tls.client_certificate is ClientCertificate.REQUIRED:
        certificates = CertificateIdentity(s.certificate_identity, s.certificate_subject_field)
    tokens = token_verifier(s)
    if certificates is None and tokens is None:
        raise SecurityConfigError(
            "an access policy needs authenticated callers: require client certificates "
            "(--tls-client-certificate required) or accept bearer tokens (--jwt-jwks-file/url)"
        )
    return (
        Authenticator(certificates=certificates, tokens=tokens),
        PolicyWatcher(s.access_policy, load_policy(s.access_policy)),
    )
