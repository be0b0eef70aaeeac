"""Decision ids: UUID strings (UUIDv7, time-ordered), stored in canonical lower-case form."""

from __future__ import annotations

import uuid

from governance.errors import InvalidDecisionId


def canonical_decision_id(value: str) -> str:
    """The canonical form of a decision id; raises InvalidDecisionId naming the bad value."""
    text = value.strip()
    if not text:
        raise InvalidDecisionId("decision_id is empty")
    # uuid.UUID also accepts braces, urn: prefixes and bare hex; ids are only ever the 36-char form.
    if len(text) != 36:
        raise InvalidDecisionId(f"decision_id {value!r} is not a UUID")
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise InvalidDecisionId(f"decision_id {value!r} is not a UUID") from None
