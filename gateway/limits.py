"""The limits a caller's request must keep, checked at the edge before any work is done.

Each is the answer to "what is the largest legitimate request", with room to spare; anything
larger is a client bug or an attack, refused with INVALID_ARGUMENT naming the field (docs/api.md
lists them). They also bound what the gateway sends back: an error names at most
``MAX_VIOLATIONS_SHOWN`` fields and shows at most ``MAX_SHOWN_CHARS`` of any value, and its parts
are bounded in bytes as sent (``gateway.errors``), so a refusal always fits in gRPC's default
metadata limit (8 KiB) and reaches the caller.
"""

from __future__ import annotations

import re

MAX_REQUEST_ID_CHARS = 128
MAX_ENTITY_KEY_CHARS = 256
MAX_DECISION_POINT_CHARS = 128
MAX_MODEL_VERSION_CHARS = 64
MAX_FEATURES = 256
"""Features in one request or row (known or not)."""
MAX_STRING_VALUE_CHARS = 256
MAX_BATCH_ROWS = 1000
MAX_SCORE_BYTES = 256 * 1024
"""The encoded ScoreRequest."""
MAX_SCORE_BATCH_BYTES = 3 * 1024 * 1024
"""The encoded ScoreBatchRequest: 1,000 rows of a few KB, well under gRPC's 4 MiB default."""

MAX_VIOLATIONS_SHOWN = 8
MAX_SHOWN_CHARS = 48
MAX_MESSAGE_BYTES = 1024
"""Of an error's message, as a status message or a ScoreBatch row's error: its bytes as gRPC
sends a status message (UTF-8, and each byte outside printable ASCII, and ``%``, percent-encoded
as three), so that non-ASCII text in a refusal cannot take it past a client's metadata limit."""

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def has_control(text: str) -> bool:
    """NUL and the other control characters: never in an id or a key (PostgreSQL cannot store
    NUL in text, and logs and CSV exports mangle the rest)."""
    return _CONTROL.search(text) is not None


_CARD_LIKE = re.compile(r"\d(?:[ -]?\d){11,}")


def card_like(text: str) -> bool:
    """Twelve or more digits in a row (spaces or hyphens between them allowed): possibly a card
    number or another account number, which an error message must not repeat."""
    return _CARD_LIKE.search(text) is not None


def shown_unless_card_like(value: str) -> str:
    """``shown(value)``, or a placeholder when the value holds a card-like number."""
    if card_like(value):
        return f"a value of {len(value)} characters holding a long number (not shown)"
    return shown(value)


def shown(value: str, limit: int = MAX_SHOWN_CHARS) -> str:
    """``value`` quoted for an error message: control characters escaped, at most ``limit``
    characters of it, and its length when cut."""
    cut = value[:limit]
    text = repr(cut)
    if len(value) > limit:
        return f"{text}... ({len(value):,} characters)"
    return text
