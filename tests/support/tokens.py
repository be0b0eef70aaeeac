"""Real signed bearer tokens for the authentication tests: an issuer with RSA and EC keys, its
JWKS written to a file the way an identity provider publishes it."""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

ISSUER = "https://idp.bank.test"
AUDIENCE = "scoregate"

SigningKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


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


def unsigned_token(subject: str, *, audience: str = AUDIENCE, issuer: str = ISSUER) -> str:
    """An ``alg: none`` token: a header, claims and an empty signature."""
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    now = int(time.time())
    body = {"iss": issuer, "aud": audience, "sub": subject, "exp": now + 300}
    return f"{header}.{_b64(json.dumps(body).encode())}."


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)
