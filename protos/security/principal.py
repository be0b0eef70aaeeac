"""Who is calling: a ``Principal``, and how one is read from a verified client certificate.

gRPC has verified the certificate against the CA bundle before any handler runs; what is left is
to choose the identity in it. ``spiffe`` takes the certificate's one SPIFFE URI SAN (a workload
identity, ``spiffe://<trust domain>/<path>``): a certificate with none, or with several, names no
single workload and is refused. ``subject`` takes one field of the subject (e.g. ``CN`` or
``OU``) for PKIs without SPIFFE. The choice is per listener, so a principal always means the same
thing in a policy.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import NameOID

from security.errors import AuthenticationFailed, SecurityConfigError

AuthContext = Mapping[str, Sequence[bytes]]
"""What ``ServicerContext.auth_context()`` returns: property name to its values."""


class VerifiedBy(enum.StrEnum):
    """How a principal was established; recorded beside it."""

    MTLS = "mtls"
    JWT = "jwt"
    NONE = "none"
    """Open access: no authentication configured (plaintext demo and tests)."""


@dataclass(frozen=True, slots=True)
class Principal:
    """A verified caller: ``id`` is what the policy matches and the record keeps."""

    id: str
    verified_by: VerifiedBy


ANONYMOUS = Principal("", VerifiedBy.NONE)
"""The caller of a server with open access."""


SUBJECT_FIELDS: dict[str, x509.ObjectIdentifier] = {
    "CN": NameOID.COMMON_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "UID": NameOID.USER_ID,
    "serialNumber": NameOID.SERIAL_NUMBER,
}

_CACHE_MAX = 4096


class CertificateIdentity:
    """Reads a principal from a call's auth context: ``spiffe``, or ``subject`` with a field.

    A connection's certificate is the same for every call on it, so the principal is cached by
    the certificate's PEM (bounded): after the first call it costs one dict lookup.
    """

    def __init__(self, source: str = "spiffe", subject_field: str = "CN") -> None:
        if source not in ("spiffe", "subject"):
            raise SecurityConfigError(f"certificate identity: {source!r} is not spiffe or subject")
        if source == "subject" and subject_field not in SUBJECT_FIELDS:
            raise SecurityConfigError(
                f"certificate identity: subject field {subject_field!r} is not one of "
                f"{', '.join(SUBJECT_FIELDS)}"
            )
        self.source = source
        self.subject_field = subject_field
        # A refusal is kept as its message: a cached exception raised at every call would keep
        # every raise's frames in its traceback.
        self._cache: dict[bytes, Principal | str] = {}

    def principal(self, auth: AuthContext) -> Principal | None:
        """The certificate's principal; None when the call presented no certificate;
        AuthenticationFailed when it presented one that names no single identity."""
        pems = auth.get("x509_pem_cert")
        if not pems:
            return None
        pem = pems[0]
        found = self._cache.get(pem)
        if found is None:
            found = self._read(pem)
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[pem] = found
        if isinstance(found, str):
            raise AuthenticationFailed(found)
        return found

    def _read(self, pem: bytes) -> Principal | str:
        cert = x509.load_pem_x509_certificate(pem)
        if self.source == "spiffe":
            try:
                sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
                uris = sans.get_values_for_type(x509.UniformResourceIdentifier)
            except x509.ExtensionNotFound:
                uris = []
            spiffe = [u for u in uris if u.startswith("spiffe://")]
            if len(spiffe) != 1:
                return f"client certificate: needs exactly one SPIFFE URI SAN, has {len(spiffe)}"
            return Principal(spiffe[0], VerifiedBy.MTLS)
        values = cert.subject.get_attributes_for_oid(SUBJECT_FIELDS[self.subject_field])
        if len(values) != 1 or not str(values[0].value):
            return (
                f"client certificate: needs exactly one subject {self.subject_field}, "
                f"has {len(values)}"
            )
        return Principal(str(values[0].value), VerifiedBy.MTLS)
