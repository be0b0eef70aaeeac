"""The gateway's TLS and access control, and its client connections' TLS, built once from its
settings at start-up. The listener's checks are ``security.listener``'s, shared with the lineage
store. What is refused exits the process with status 2 before it serves."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gateway.settings import GatewaySettings
from gateway.transport.access import EdgeAccess
from security.errors import SecurityConfigError
from security.listener import is_loopback, policy_access, server_tls
from security.policy_reload import PolicyWatcher
from security.tls import ClientTls, ServerTls

__all__ = ["EdgeSecurity", "edge_security", "is_loopback"]


@dataclass(frozen=True)
class EdgeSecurity:
    server_tls: ServerTls | None
    """None: plaintext (``--plaintext``)."""
    access: EdgeAccess
    runtime_tls: ClientTls | None
    lineage_tls: ClientTls | None
    tracing_tls: ClientTls | None
    """The general-tracing collector's; the store's own spans use ``lineage_tls``."""

    @property
    def policy(self) -> PolicyWatcher | None:
        return self.access.policy


def _access(s: GatewaySettings, tls: ServerTls | None) -> EdgeAccess:
    checked = policy_access(s, tls, "score everything")
    return EdgeAccess() if checked is None else EdgeAccess(*checked)


def _client_tls(
    on: bool, ca: Path | None, cert: Path | None, key: Path | None, name: str
) -> ClientTls | None:
    if not on:
        if ca or cert or key or name:
            raise SecurityConfigError("client TLS files given, but that connection's TLS is off")
        return None
    tls = ClientTls(ca, cert, key, name)
    tls.channel_credentials()  # refuse bad files now
    return tls


def edge_security(s: GatewaySettings) -> EdgeSecurity:
    """Everything above from ``s``; SecurityConfigError names what is wrong."""
    tls = server_tls(s)
    return EdgeSecurity(
        tls,
        _access(s, tls),
        _client_tls(s.runtime_tls, s.runtime_tls_ca_file, s.runtime_tls_cert_file,
                    s.runtime_tls_key_file, s.runtime_tls_server_name),
        _client_tls(s.lineage_tls, s.lineage_tls_ca_file, s.lineage_tls_cert_file,
                    s.lineage_tls_key_file, s.lineage_tls_server_name),
        _client_tls(s.otlp_tls, s.otlp_tls_ca_file, s.otlp_tls_cert_file,
                    s.otlp_tls_key_file, s.otlp_tls_server_name),
    )  # fmt: skip
