"""Sticky traffic splits: which arm a key lands on, from a hash, with no state.

A key's bucket is the 8-byte blake2b digest (``digest_size=8``, the decision point's name as salt,
hashed down to 16 bytes when longer) of the key, big-endian, modulo 10,000; it is on the split
when its bucket is below ``weight * 100`` (docs/routing.md states the formula exactly).
The bucket never changes, so a key stays on its arm while
the weight stays, and raising the weight only adds buckets: keys move from primary to canary and
never back. The salt (the decision point's name) keeps one customer from being the canary's
guinea pig at every decision point at once.
"""

from __future__ import annotations

import hashlib

BUCKETS = 10_000


def threshold(weight_percent: float) -> int:
    """Buckets on the split for a weight in percent (0-100, two decimals count)."""
    return round(weight_percent * BUCKETS / 100)


def bucket(salt: str, key: str) -> int:
    digest = hashlib.blake2b(key.encode(), digest_size=8, salt=_salt(salt)).digest()
    return int.from_bytes(digest) % BUCKETS


def _salt(text: str) -> bytes:
    # blake2b takes a salt of at most 16 bytes; longer names are hashed down to 16.
    raw = text.encode()
    return raw if len(raw) <= 16 else hashlib.blake2b(raw, digest_size=16).digest()


def on_split(salt: str, key: str, buckets_on: int) -> bool:
    """True when ``key`` falls in the first ``buckets_on`` of the 10,000 buckets."""
    if buckets_on <= 0:
        return False
    if buckets_on >= BUCKETS:
        return True
    return bucket(salt, key) < buckets_on
