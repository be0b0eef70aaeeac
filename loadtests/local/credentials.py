"""Credentials for a secured local topology (the bench's authenticated path, tests): a CA with
the server and client leaves it signs, and a token issuer with its JWKS.

Made with ``cryptography`` when they are needed, so nothing is checked in that could expire or
leak, and a test can make a second, unknown CA to be refused. Short-lived by design: never for
anything but loopback.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

ISSUER = "https://idp.bank.test"
AUDIENCE = "scoregate"

SigningKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


class Issuer:
    """Keys by kid: ``rsa(kid)`` / ``ec(kid)`` add one; ``write_jwks`` publishes the public
    halves of those named (all by default) atomically, as a Secret or ConfigMap update does."""

    def __init__(self) -> None:
        self.keys: dict[str, tuple[str, SigningKey]] = {}

    def rsa(self, kid: str) -> str:
        self.keys[kid] = ("RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048))
        return kid

    def ec(self, kid: str) -> str:
        self.keys[kid] = ("ES256", ec.generate_private_key(ec.SECP256R1()))
        return kid

    def jwks(self, kids: list[str] | None = None) -> dict[str, Any]:
        keys = []
        for kid in kids if kids is not None else list(self.keys):
            alg, key = self.keys[kid]
            if isinstance(key, rsa.RSAPrivateKey):
                jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
            else:
                jwk = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
            keys.append({**jwk, "kid": kid, "alg": alg, "use": "sig"})
        return {"keys": keys}

    def write_jwks(self, path: Path, kids: list[str] | None = None) -> Path:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.jwks(kids)))
        os.replace(tmp, path)
        return path

    def token(
        self,
        kid: str,
        subject: str,
        *,
        audience: str = AUDIENCE,
        issuer: str = ISSUER,
        lifetime_s: float = 300,
        not_before_s: float | None = None,
        **claims: Any,
    ) -> str:
        alg, key = self.keys[kid]
        now = int(time.time())
        payload: dict[str, Any] = {
            "iss": issuer,
            "aud": audience,
            "sub": subject,
            "iat": now,
            "exp": now + int(lifetime_s),
            **claims,
        }
        if not_before_s is not None:
            payload["nbf"] = now + int(not_before_s)
        return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid})


@dataclass(frozen=True)
class Leaf:
    cert_pem: bytes
    key_pem: bytes

    def write(self, directory: Path, name: str) -> tuple[Path, Path]:
        """``<name>.crt`` and ``<name>.key`` in ``directory``; returns both paths."""
        cert, key = directory / f"{name}.crt", directory / f"{name}.key"
        cert.write_bytes(self.cert_pem)
        key.write_bytes(self.key_pem)
        return cert, key


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


class CertificateAuthority:
    def __init__(self, name: str = "scoregate test CA") -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = dt.datetime.now(dt.UTC)
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(self._name)
            .issuer_name(self._name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False
            )
            .sign(self._key, hashes.SHA256())
        )

    @property
    def cert_pem(self) -> bytes:
        return self._cert.public_bytes(serialization.Encoding.PEM)

    def write(self, path: Path) -> Path:
        path.write_bytes(self.cert_pem)
        return path

    def _leaf(
        self,
        common_name: str,
        sans: list[x509.GeneralName],
        usage: x509.ObjectIdentifier | list[x509.ObjectIdentifier],
        organizational_unit: str = "",
    ) -> Leaf:
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
        if organizational_unit:
            attributes.append(
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, organizational_unit)
            )
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(attributes))
            .issuer_name(self._name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(hours=12))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(usage if isinstance(usage, list) else [usage]),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        return Leaf(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))

    def server(self, common_name: str = "scoregate-gateway") -> Leaf:
        """A server certificate for localhost and 127.0.0.1."""
        sans: list[x509.GeneralName] = [
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        ]
        return self._leaf(common_name, sans, ExtendedKeyUsageOID.SERVER_AUTH)

    def client(
        self, spiffe_ids: tuple[str, ...] = (), common_name: str = "client",
        organizational_unit: str = "",
    ) -> Leaf:  # fmt: skip
        """A client certificate with ``spiffe_ids`` as URI SANs (none, one or several)."""
        sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(u) for u in spiffe_ids]
        return self._leaf(common_name, sans, ExtendedKeyUsageOID.CLIENT_AUTH, organizational_unit)

    def workload(self, spiffe_id: str, common_name: str = "workload") -> Leaf:
        """One certificate for a workload that serves and calls (as cert-manager issues the
        chart's gateway): localhost and 127.0.0.1, ``spiffe_id`` as its URI SAN, both usages."""
        sans: list[x509.GeneralName] = [
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.UniformResourceIdentifier(spiffe_id),
        ]
        usages = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
        return self._leaf(common_name, sans, usages)
