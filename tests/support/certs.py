"""Real X.509 certificates for the TLS tests (``loadtests.local.credentials``, which the bench's
secured path uses too)."""

from loadtests.local.credentials import CertificateAuthority, Leaf

__all__ = ["CertificateAuthority", "Leaf"]
