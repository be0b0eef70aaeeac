"""OAuth 2.0 bearer tokens (JWT) verified as RFC 8725 asks, and cached once verified.

A token is accepted only if its header names an algorithm of the explicit allow-list (``none``
and the HMAC family can never be on it: the key set is public), its ``kid`` is a key of the
issuer's current set and the key's type is the algorithm's, the signature verifies, ``iss`` is
the configured issuer, ``aud`` holds the configured audience, ``exp`` is present and not passed
and ``nbf`` (if any) reached, each within ``leeway_s`` of clock skew, and the principal claim is
a non-empty string.

Callers send the same token for its whole lifetime, so a verified token is cached by its exact
text until it expires (or the key set changes): a repeated call costs a dict lookup and a clock
read instead of a signature check. Refusals that stay refusals (a bad signature, a wrong
audience, an expired token) are cached alike, so a client retrying with a stale token costs as
little; a refusal that time or a rotation may lift (``nbf`` not reached, an unknown ``kid``) is
not.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import jwt

from security.errors import AuthenticationFailed, SecurityConfigError
from security.jwks import JwksKeys
from security.principal import Principal, VerifiedBy

MAX_TOKEN_CHARS = 8192
MAX_LEEWAY_S = 300.0
CACHE_MAX = 10_000

_KEY_TYPES = {
    **dict.fromkeys(("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"), "RSA"),
    **dict.fromkeys(("ES256", "ES384", "ES512"), "EC"),
    "EdDSA": "OKP",
}
ALGORITHMS = frozenset(_KEY_TYPES)
"""The algorithms an allow-list may name: asymmetric signatures only."""


@dataclass(frozen=True, slots=True)
class TokenSettings:
    """What a token must satisfy; ``algorithms`` is the allow-list, no default."""

    issuer: str
    audience: str
    algorithms: tuple[str, ...]
    leeway_s: float = 30.0
    principal_claim: str = "sub"

    def __post_init__(self) -> None:
        if not self.issuer or not self.audience:
            raise SecurityConfigError("bearer tokens: an issuer and an audience are required")
        if not self.algorithms:
            raise SecurityConfigError("bearer tokens: the algorithm allow-list is empty")
        refused = [a for a in self.algorithms if a not in ALGORITHMS]
        if refused:
            raise SecurityConfigError(
                f"bearer tokens: algorithm(s) {', '.join(refused)} not allowed "
                f"(asymmetric only: {', '.join(sorted(ALGORITHMS))})"
            )
        if not 0 <= self.leeway_s <= MAX_LEEWAY_S:
            raise SecurityConfigError(f"bearer tokens: leeway must be 0-{MAX_LEEWAY_S:.0f} s")


@dataclass(frozen=True, slots=True)
class _Verified:
    principal: Principal
    expires_at: float
    generation: int


@dataclass(frozen=True, slots=True)
class _Refused:
    # The message, not the exception: an exception object raised again and again keeps every
    # raise's frames in its traceback, and a cached one would grow without bound.
    message: str
    generation: int


def _refusal(error: jwt.InvalidTokenError, audience: str) -> tuple[AuthenticationFailed, bool]:
    """The caller's message for PyJWT's error, and whether it is final (cacheable)."""
    if isinstance(error, jwt.ExpiredSignatureError):
        return AuthenticationFailed("bearer token: expired"), True
    if isinstance(error, jwt.ImmatureSignatureError):
        return AuthenticationFailed("bearer token: not valid yet (nbf)"), False
    if isinstance(error, jwt.InvalidAudienceError):
        return AuthenticationFailed(f"bearer token: not for this audience ({audience!r})"), True
    if isinstance(error, jwt.InvalidIssuerError):
        return AuthenticationFailed("bearer token: issuer not accepted"), True
    if isinstance(error, jwt.MissingRequiredClaimError):
        return AuthenticationFailed(f"bearer token: missing the {error.claim!r} claim"), True
    if isinstance(error, jwt.InvalidSignatureError):
        return AuthenticationFailed("bearer token: signature does not verify"), True
    return AuthenticationFailed("bearer token: malformed"), True


class TokenVerifier:
    """Verifies bearer tokens against ``settings`` and the issuer's ``keys``."""

    def __init__(self, settings: TokenSettings, keys: JwksKeys) -> None:
        self.settings = settings
        self.keys = keys
        self._allowed = frozenset(settings.algorithms)
        self._cache: dict[str, _Verified | _Refused] = {}
        self._accepted = ", ".join(settings.algorithms)

    async def principal(self, token: str) -> Principal:
        """The token's principal, or AuthenticationFailed saying what is wrong with it."""
        await self.keys.maybe_refresh()
        generation = self.keys.generation
        hit = self._cache.get(token)
        if hit is not None and hit.generation == generation:
            if isinstance(hit, _Refused):
                raise AuthenticationFailed(hit.message)
            if time.time() - self.settings.leeway_s < hit.expires_at:
                return hit.principal
            self._remember(token, _Refused("bearer token: expired", generation))
            raise AuthenticationFailed("bearer token: expired")
        found = await self._verify(token)
        self._remember(token, found)
        if isinstance(found, _Refused):
            raise AuthenticationFailed(found.message)
        return found.principal

    def _remember(self, token: str, entry: _Verified | _Refused) -> None:
        if len(self._cache) >= CACHE_MAX:
            # Whole-cache eviction: O(1) per insert on average, and a full cache is rare (10k
            # distinct live tokens per process).
            self._cache.clear()
        self._cache[token] = entry

    async def _verify(self, token: str) -> _Verified | _Refused:
        """The verdict to cache; raises the refusals that must not be cached."""
        generation = self.keys.generation

        def refused(message: str) -> _Refused:
            return _Refused(f"bearer token: {message}", generation)

        if len(token) > MAX_TOKEN_CHARS:
            return refused(f"over {MAX_TOKEN_CHARS} characters")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            return refused("malformed")
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._allowed:
            return refused(f"algorithm {alg!r} not accepted (accepted: {self._accepted})")
        kid = header.get("kid", "")
        if not isinstance(kid, str):
            return refused("malformed kid")
        key = self.keys.get(kid)
        if key is None and await self.keys.refresh_for_unknown_kid():
            key = self.keys.get(kid)
        if key is None:
            raise AuthenticationFailed(f"bearer token: signed with an unknown key (kid {kid!r})")
        generation = self.keys.generation
        jwk_alg = key._jwk_data.get("alg")
        if _KEY_TYPES[alg] != key.key_type or (jwk_alg is not None and jwk_alg != alg):
            return refused(f"key {kid!r} is not a key for {alg}")
        s = self.settings
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                audience=s.audience,
                issuer=s.issuer,
                leeway=s.leeway_s,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.InvalidTokenError as e:
            error, final = _refusal(e, s.audience)
            if not final:
                raise error from None
            return _Refused(str(error), generation)
        subject = claims.get(s.principal_claim)
        if not isinstance(subject, str) or not subject:
            return refused(f"the {s.principal_claim!r} claim is missing or empty")
        return _Verified(Principal(subject, VerifiedBy.JWT), float(claims["exp"]), generation)
