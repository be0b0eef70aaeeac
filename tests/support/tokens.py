"""Real signed bearer tokens for the authentication tests: the issuer of
``loadtests.local.credentials``, and the forgeries only tests need."""

from __future__ import annotations

import base64
import json
import time

from loadtests.local.credentials import AUDIENCE, ISSUER, Issuer

__all__ = ["AUDIENCE", "ISSUER", "Issuer", "bearer", "unsigned_token"]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_token(subject: str, *, audience: str = AUDIENCE, issuer: str = ISSUER) -> str:
    """An ``alg: none`` token: a header, claims and an empty signature."""
    header = _b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    now = int(time.time())
    body = {"iss": issuer, "aud": audience, "sub": subject, "exp": now + 300}
    return f"{header}.{_b64(json.dumps(body).encode())}."


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)
