"""A call's principal, from its bearer token or its client certificate, whichever it brings.

A call with an ``authorization: Bearer`` token is the token's principal (a service calling on a
token its identity provider issued), even over a mutual-TLS connection; a call without one is its
client certificate's. A listener can take either or both; a call that brings neither it takes is
refused with UNAUTHENTICATED saying what it takes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from security.errors import AuthenticationFailed, SecurityConfigError
from security.principal import AuthContext, CertificateIdentity, Principal
from security.tokens import TokenVerifier

_BEARER = "bearer "


class Authenticator:
    """``certificates`` for mTLS callers, ``tokens`` for bearer callers: at least one."""

    def __init__(
        self,
        *,
        certificates: CertificateIdentity | None = None,
        tokens: TokenVerifier | None = None,
    ) -> None:
        if certificates is None and tokens is None:
            raise SecurityConfigError("authentication: neither certificates nor tokens are on")
        self.certificates = certificates
        self.tokens = tokens
        takes = [
            *(["a client certificate"] if certificates is not None else []),
            *(["an 'authorization: Bearer <token>' header"] if tokens is not None else []),
        ]
        self._missing = f"no credentials: send {' or '.join(takes)}"

    async def principal(
        self,
        metadata: Iterable[tuple[str, str | bytes]] | None,
        auth: Callable[[], AuthContext],
    ) -> Principal:
        """The caller's principal; AuthenticationFailed with what to fix. ``auth`` gives the
        call's auth context, asked for only when the certificate is needed: gRPC builds it
        afresh, PEM included, at each ask."""
        header = None
        for key, value in metadata or ():
            if key == "authorization":
                if header is not None:
                    raise AuthenticationFailed("authorization: send one header, not several")
                header = value
        if header is not None:
            if self.tokens is None:
                raise AuthenticationFailed("authorization: bearer tokens are not accepted here")
            if not isinstance(header, str) or header[:7].lower() != _BEARER:
                raise AuthenticationFailed("authorization: not a 'Bearer <token>' header")
            return await self.tokens.principal(header[7:].strip())
        if self.certificates is not None:
            found = self.certificates.principal(auth())
            if found is not None:
                return found
        raise AuthenticationFailed(self._missing)
