"""The security package's errors, each carrying the gRPC status a caller receives.

::

    SecurityError (INTERNAL)
    ├── AuthenticationFailed (UNAUTHENTICATED)   no credentials, or credentials that do not verify
    ├── PermissionDenied (PERMISSION_DENIED)     a verified principal the policy does not allow
    └── SecurityConfigError (FAILED_PRECONDITION) a TLS file, key set or policy file refused

An ``AuthenticationFailed`` message tells the caller what to fix (no token, expired, wrong
audience, unknown signing key) and never what the server holds: no key material, no expected
values beyond the audience the caller must ask for, no stack. A ``PermissionDenied`` names the
permission the caller lacks and the principal it was checked for, which is the caller's own.

Servers map these to status in their one error mapping (the gateway's ``gateway.errors``).
"""

from __future__ import annotations

import grpc


class SecurityError(Exception):
    """Base of the security package's errors."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL


class AuthenticationFailed(SecurityError):
    """The call carries no usable identity; the message is safe to return to the caller."""

    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(SecurityError):
    """A verified principal lacks ``permission`` (e.g. ``score:card-fraud``)."""

    code = grpc.StatusCode.PERMISSION_DENIED

    def __init__(self, principal: str, permission: str) -> None:
        self.principal = principal
        self.permission = permission
        super().__init__(f"permission denied: {principal!r} lacks {permission!r}")


class SecurityConfigError(SecurityError):
    """A TLS file, JWKS or access policy that cannot be used; the message names the file."""

    code = grpc.StatusCode.FAILED_PRECONDITION
