"""The store's TLS and access control, built once from its settings at start-up. The listener's
checks are ``security.listener``'s, shared with the gateway. What is refused exits the process
with status 2 before it serves."""

from __future__ import annotations

from dataclasses import dataclass

from governance.access import StoreAccess
from governance.settings import LineageSettings
from security.listener import is_loopback, policy_access, server_tls
from security.tls import ServerTls

__all__ = ["StoreSecurity", "is_loopback", "store_security"]


@dataclass(frozen=True)
class StoreSecurity:
    server_tls: ServerTls | None
    """None: plaintext (``--plaintext``)."""
    access: StoreAccess


def _access(s: LineageSettings, tls: ServerTls | None) -> StoreAccess:
    checked = policy_access(s, tls, "read and write all lineage")
    return StoreAccess() if checked is None else StoreAccess(*checked)


def store_security(s: LineageSettings) -> StoreSecurity:
    """Everything above from ``s``; SecurityConfigError names what is wrong."""
    tls = server_tls(s)
    return StoreSecurity(tls, _access(s, tls))
