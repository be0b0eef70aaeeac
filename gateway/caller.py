"""Who asked for a decision: the principal the transport edge verified, and the access policy
version that allowed the call. A plain value, so that the core records it without knowing how it
was established (a certificate, a token, or open access)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Caller:
    principal: str = ""
    """The caller's identity: a SPIFFE ID, a certificate subject field or a token's subject."""
    verified_by: str = "none"
    """How: ``mtls``, ``jwt``, or ``none`` when the gateway runs with open access."""
    access_policy_version: str = ""
    """The access policy's version the call was allowed under; empty with open access."""


OPEN_ACCESS = Caller()
"""The caller of a gateway that authenticates no one (``--open-access``: demo and tests)."""
