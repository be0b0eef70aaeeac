"""Bearer token verification: the allow-list, the key set's refreshes, and the verdict cache."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from support.tokens import AUDIENCE, ISSUER, Issuer

from security.errors import AuthenticationFailed, SecurityConfigError
from security.jwks import JwksKeys
from security.principal import VerifiedBy
from security.tokens import TokenSettings, TokenVerifier


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


SETTINGS = TokenSettings(ISSUER, AUDIENCE, ("RS256", "ES256"))


@pytest.mark.parametrize("algorithms", [(), ("none",), ("HS256",), ("RS256", "none")])
def test_the_allow_list_takes_asymmetric_algorithms_only(algorithms: tuple[str, ...]) -> None:
    with pytest.raises(SecurityConfigError):
        TokenSettings(ISSUER, AUDIENCE, algorithms)


def _verifier(tmp_path: Path, issuer: Issuer) -> TokenVerifier:
    jwks = issuer.write_jwks(tmp_path / "jwks.json")
    return TokenVerifier(SETTINGS, JwksKeys(file=jwks))


async def test_a_token_signed_with_the_public_key_as_an_hmac_secret_is_refused(
    tmp_path: Path,
) -> None:
    issuer = Issuer()
    issuer.rsa("k")
    verifier = _verifier(tmp_path, issuer)
    public = (
        issuer.keys["k"][1]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": int(time.time()) + 60}
    # Built by hand: PyJWT itself refuses to use a public key as an HMAC secret.
    signing_input = f"{_b64(json.dumps({'alg': 'HS256', 'kid': 'k'}).encode())}." + _b64(
        json.dumps(claims).encode()
    )
    mac = hmac.new(public, signing_input.encode(), hashlib.sha256).digest()
    forged = f"{signing_input}.{_b64(mac)}"
    with pytest.raises(AuthenticationFailed, match="algorithm 'HS256' not accepted"):
        await verifier.principal(forged)


async def test_a_token_whose_alg_is_not_its_keys_is_refused(tmp_path: Path) -> None:
    issuer = Issuer()
    issuer.rsa("k")
    issuer.ec("e")
    verifier = _verifier(tmp_path, issuer)
    # Signed by the EC key but naming the RSA key's kid.
    _, ec_key = issuer.keys["e"]
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": time.time() + 60}
    token = jwt.encode(claims, ec_key, algorithm="ES256", headers={"kid": "k"})
    with pytest.raises(AuthenticationFailed, match="key 'k' is not a key for ES256"):
        await verifier.principal(token)


async def test_a_verified_token_is_cached_until_it_expires(tmp_path: Path) -> None:
    issuer = Issuer()
    issuer.rsa("k")
    verifier = _verifier(tmp_path, issuer)
    token = issuer.token("k", "svc", lifetime_s=2)
    principal = await verifier.principal(token)
    assert (principal.id, principal.verified_by) == ("svc", VerifiedBy.JWT)
    started = time.perf_counter()
    for _ in range(2000):
        assert await verifier.principal(token) is principal
    per_call_us = (time.perf_counter() - started) / 2000 * 1e6
    assert per_call_us < 100, f"{per_call_us:.1f} us per cached check"
    # The cache keeps no token past its exp (plus the leeway).
    short = TokenVerifier(TokenSettings(ISSUER, AUDIENCE, ("RS256",), leeway_s=0), verifier.keys)
    await short.principal(token)
    await asyncio.sleep(2.1)
    with pytest.raises(AuthenticationFailed, match="expired"):
        await short.principal(token)


class _JwksServer(http.server.ThreadingHTTPServer):
    body = b""
    fetches = 0


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _JwksServer

    def do_GET(self) -> None:
        self.server.fetches += 1
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(self.server.body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def jwks_server() -> Iterator[_JwksServer]:
    server = _JwksServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


async def test_unknown_key_ids_refetch_a_jwks_url_at_most_once_per_interval(
    jwks_server: _JwksServer,
) -> None:
    issuer = Issuer()
    issuer.ec("old")
    jwks_server.body = json.dumps(issuer.jwks()).encode()
    url = f"http://127.0.0.1:{jwks_server.server_port}/jwks"
    verifier = TokenVerifier(SETTINGS, JwksKeys(url=url, min_refresh_s=60))
    assert jwks_server.fetches == 1
    # The issuer rotates: a token with the new kid makes the gateway fetch once, and verifies.
    issuer.rsa("new")
    jwks_server.body = json.dumps(issuer.jwks()).encode()
    assert (await verifier.principal(issuer.token("new", "svc"))).id == "svc"
    assert jwks_server.fetches == 2
    # Made-up kids do not make it fetch again within the interval.
    issuer.rsa("made-up")
    for _ in range(50):
        with pytest.raises(AuthenticationFailed, match="unknown key"):
            await verifier.principal(issuer.token("made-up", "svc"))
    assert jwks_server.fetches == 2


async def test_a_cached_refusal_is_a_fresh_error_each_time(tmp_path: Path) -> None:
    """A cached exception raised at every call would keep every raise's frames."""
    issuer = Issuer()
    issuer.rsa("k")
    verifier = _verifier(tmp_path, issuer)
    expired = issuer.token("k", "svc", lifetime_s=-100)
    errors = []
    for _ in range(3):
        with pytest.raises(AuthenticationFailed, match="expired") as caught:
            await verifier.principal(expired)
        errors.append(caught.value)
    assert len({id(e) for e in errors}) == 3
