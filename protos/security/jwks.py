"""The token issuer's public keys (a JWKS), from a file or an HTTPS URL, kept current.

Keys are found by ``kid``. The key set is re-read when it may have changed: a file is checked
(``stat``) at most every ``check_interval_s`` and re-read when it changed; a URL is fetched every
``refresh_s``. A token signed with a ``kid`` the set lacks is how an issuer's rotation first
shows, so it triggers one re-read at once, at most every ``min_refresh_s`` whatever the traffic:
a caller sending made-up key ids cannot make the server hammer the issuer. A re-read that fails
or holds no usable key keeps the keys in use (and logs why).

Symmetric keys (``kty: oct``) are never taken: with a published key set they would let anyone
who can read it sign tokens.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt

from security.errors import SecurityConfigError

log = logging.getLogger(__name__)

MAX_JWKS_BYTES = 1024 * 1024
FETCH_TIMEOUT_S = 5.0
_ASYMMETRIC = {"RSA", "EC", "OKP"}


def parse_jwks(data: bytes, source: str) -> dict[str, jwt.PyJWK]:
    """The usable keys by kid ('' for a key without one); SecurityConfigError if none."""
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise SecurityConfigError(f"JWKS {source}: not JSON") from None
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise SecurityConfigError(f"JWKS {source}: no 'keys' list")
    keys: dict[str, jwt.PyJWK] = {}
    for n, entry in enumerate(entries):
        if not isinstance(entry, dict) or entry.get("kty") not in _ASYMMETRIC:
            log.warning("JWKS %s: keys[%d] skipped (not an RSA, EC or OKP public key)", source, n)
            continue
        if entry.get("use", "sig") != "sig":
            continue
        if any(k in entry for k in ("d", "p", "q")):
            # A private key published by mistake is still only used to verify, but say so.
            log.warning("JWKS %s: keys[%d] carries private key material", source, n)
        try:
            key = jwt.PyJWK(entry)
        except jwt.PyJWKError as e:
            log.warning("JWKS %s: keys[%d] skipped: %s", source, n, e)
            continue
        keys[str(entry.get("kid", ""))] = key
    if not keys:
        raise SecurityConfigError(f"JWKS {source}: no usable signing key")
    return keys


def _fetch(url: str) -> bytes:
    request = urllib.request.Request(url, headers={"accept": "application/json"})
    with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT_S) as response:
        data: bytes = response.read(MAX_JWKS_BYTES + 1)
    if len(data) > MAX_JWKS_BYTES:
        raise SecurityConfigError(f"JWKS {url}: over {MAX_JWKS_BYTES} bytes")
    return data


def _check_url(url: str) -> None:
    parts = urlsplit(url)
    loopback = parts.hostname in ("127.0.0.1", "::1", "localhost")
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
        raise SecurityConfigError(f"JWKS URL {url}: must be https (http only on loopback)")


class JwksKeys:
    """The current key set; ``generation`` moves whenever it changes."""

    def __init__(
        self,
        *,
        file: Path | None = None,
        url: str = "",
        check_interval_s: float = 1.0,
        refresh_s: float = 300.0,
        min_refresh_s: float = 10.0,
    ) -> None:
        if (file is None) == (not url):
            raise SecurityConfigError("JWKS: give exactly one of a file and a URL")
        if url:
            _check_url(url)
        self._file = file
        self._url = url
        self._check_interval_s = check_interval_s
        self._refresh_s = refresh_s
        self._min_refresh_s = min_refresh_s
        self._stat: tuple[int, int, int] | None = None
        self._keys: dict[str, jwt.PyJWK] = {}
        self.generation = 0
        self._next_check = 0.0
        self._last_forced = -min_refresh_s
        self._refreshing: asyncio.Task[bool] | None = None
        self._install(self._read())
        self._next_check = time.monotonic() + (check_interval_s if file else refresh_s)

    @property
    def source(self) -> str:
        return str(self._file) if self._file is not None else self._url

    def _file_stat(self) -> tuple[int, int, int] | None:
        assert self._file is not None
        try:
            st = os.stat(self._file)
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def _read(self) -> dict[str, jwt.PyJWK]:
        if self._file is not None:
            self._stat = self._file_stat()
            try:
                data = self._file.read_bytes()
            except OSError as e:
                raise SecurityConfigError(
                    f"JWKS {self._file}: cannot be read ({e.strerror})"
                ) from None
            return parse_jwks(data, str(self._file))
        try:
            data = _fetch(self._url)
        except OSError as e:
            raise SecurityConfigError(f"JWKS {self._url}: fetch failed ({e})") from None
        return parse_jwks(data, self._url)

    def _install(self, keys: dict[str, jwt.PyJWK]) -> bool:
        if keys.keys() == self._keys.keys() and all(_same(keys[k], self._keys[k]) for k in keys):
            return False
        self._keys = keys
        self.generation += 1
        log.info("JWKS %s: %d key(s): %s", self.source, len(keys), ", ".join(sorted(keys)))
        return True

    def get(self, kid: str) -> jwt.PyJWK | None:
        """The key for ``kid``; a token without a kid gets the only key, if there is one."""
        key = self._keys.get(kid)
        if key is None and not kid and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        return key

    async def maybe_refresh(self) -> None:
        """Re-reads the keys when due (cheap when not: one clock read)."""
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + (self._check_interval_s if self._file else self._refresh_s)
        if self._file is not None and self._file_stat() == self._stat:
            return
        await self._reload()

    async def refresh_for_unknown_kid(self) -> bool:
        """One re-read now unless one was forced less than ``min_refresh_s`` ago; True when
        the key set changed."""
        now = time.monotonic()
        if self._refreshing is None and now - self._last_forced < self._min_refresh_s:
            return False
        self._last_forced = now
        return await self._reload()

    async def _reload(self) -> bool:
        # Callers arriving while a re-read runs wait for that one rather than start another.
        if self._refreshing is None:
            self._refreshing = asyncio.ensure_future(self._reload_once())
        task = self._refreshing
        try:
            return await asyncio.shield(task)
        finally:
            if task.done() and self._refreshing is task:
                self._refreshing = None

    async def _reload_once(self) -> bool:
        try:
            keys = await asyncio.to_thread(self._read) if self._url else self._read()
        except SecurityConfigError as e:
            log.error("JWKS re-read refused; keeping the %d key(s) in use: %s", len(self._keys), e)
            return False
        return self._install(keys)


def _same(a: jwt.PyJWK, b: jwt.PyJWK) -> bool:
    data: Any = a._jwk_data  # the JWK as given: the one faithful comparison
    return bool(data == b._jwk_data)
