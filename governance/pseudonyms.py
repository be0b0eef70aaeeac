"""Entity keys pseudonymised at ingest, per decision point, and found again by the raw key.

For a decision point where it is on, a record's ``entity_key`` is replaced by its keyed hash
(``security.pseudonyms``) before the record is stored: the raw key is in no column, no stored
body and no index, and the record's sha256 and chain entry are over that stored form, so
``verify`` checks what is kept. A resent record is pseudonymised the same way, so it is still a
duplicate and not a conflict. A caller who presents a raw key is answered from its pseudonym
(and from the raw key too, for decision points where it is off).

To hold a gateway's own copy of a record against the stored one, pseudonymise its entity key
with the same key first (``stored_form``): the two sha256s are then equal.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from lineage.v1.record import DecisionRecord
from security.pseudonyms import KeyedHash

ALL_POINTS = "*"


class EntityPseudonyms:
    """Which decision points' entity keys are stored as pseudonyms, under which key."""

    __slots__ = ("_all", "_key", "_points")

    def __init__(self, key: KeyedHash | None = None, points: Sequence[str] = ()) -> None:
        names = frozenset(p.strip() for p in points if p.strip())
        if names and key is None:
            raise ValueError("pseudonymising entity keys needs --entity-key-file")
        if key is not None and key.ephemeral:
            # A random key would leave the stored pseudonyms unanswerable after a restart.
            raise ValueError("entity keys can be pseudonymised only with a key kept in a file")
        self._key = key
        self._all = ALL_POINTS in names
        self._points = names - {ALL_POINTS}

    @property
    def enabled(self) -> bool:
        return self._key is not None and (self._all or bool(self._points))

    def applies(self, decision_point: str) -> bool:
        return self._key is not None and (self._all or decision_point in self._points)

    def stored_form(self, record: DecisionRecord) -> DecisionRecord:
        """The record as the store keeps it."""
        if self._key is None or not self.applies(record.decision_point):
            return record
        return dataclasses.replace(record, entity_key=self._key.pseudonym(record.entity_key))

    def stored_forms(self, records: Sequence[DecisionRecord]) -> Sequence[DecisionRecord]:
        if not self.enabled:
            return records
        return [self.stored_form(r) for r in records]

    def lookup_keys(self, entity_key: str, decision_point: str = "") -> tuple[str, ...]:
        """The forms ``entity_key`` may be stored under: one when the decision point is named
        (or every point is pseudonymised), else the raw key and its pseudonym."""
        if self._key is None or not self.enabled:
            return (entity_key,)
        pseudonym = self._key.pseudonym(entity_key)
        if decision_point:
            return (pseudonym,) if self.applies(decision_point) else (entity_key,)
        return (pseudonym,) if self._all else (entity_key, pseudonym)

    def presented(self, entity_key: str) -> str:
        """What the access log keeps of a presented key: its pseudonym while any point's keys
        are pseudonymised (else the log would hold the raw key the records no longer do)."""
        if self._key is None or not self.enabled or not entity_key:
            return entity_key
        return self._key.pseudonym(entity_key)
