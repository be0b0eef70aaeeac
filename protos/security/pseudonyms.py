"""Keyed hashes standing in for personal identifiers (entity keys, request ids).

A plain sha256 of a card number can be reversed by hashing every candidate (16 digits, a Luhn
check and a known issuer prefix leave about 10^9 of them: seconds on a laptop), so telemetry and
the lineage store use HMAC-SHA256 with a secret instead: without the secret, a guess cannot be
checked. The same key and value always give the same pseudonym, so a holder of the key can still
find every decision about one customer.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path

PSEUDONYM_PREFIX = "hmac-sha256:"
"""What a pseudonymised value starts with, so a reader can tell it from a raw key."""

MIN_KEY_BYTES = 16
"""A shorter secret could itself be guessed."""


class KeyedHash:
    """HMAC-SHA256 under one secret; ``pseudonym`` is the hex digest with ``PSEUDONYM_PREFIX``."""

    __slots__ = ("_key", "ephemeral")

    def __init__(self, key: bytes, *, ephemeral: bool = False) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"a pseudonym key needs at least {MIN_KEY_BYTES} bytes")
        self._key = key
        self.ephemeral = ephemeral
        """True for a random key drawn at start: its pseudonyms mean nothing after a restart."""

    @classmethod
    def from_file(cls, path: Path) -> KeyedHash:
        """The secret is the file's bytes, surrounding whitespace stripped (a mounted Secret
        often ends with a newline)."""
        try:
            key = path.read_bytes().strip()
        except OSError as e:
            raise ValueError(f"{path}: cannot read the pseudonym key: {e.strerror}") from None
        try:
            return cls(key)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None

    @classmethod
    def random(cls) -> KeyedHash:
        return cls(secrets.token_bytes(32), ephemeral=True)

    def digest(self, value: str) -> str:
        return hmac.new(self._key, value.encode(), hashlib.sha256).hexdigest()

    def pseudonym(self, value: str) -> str:
        """The stored or exported form of ``value``; the empty string stays empty."""
        if not value:
            return value
        return PSEUDONYM_PREFIX + self.digest(value)

    def __repr__(self) -> str:
        # Never the secret, wherever the object ends up printed.
        return f"KeyedHash(ephemeral={self.ephemeral})"
