"""Ingestion: decision records into the store, with everything the sender must hear back.

Transport-free: the OTLP receiver hands over parsed records and the spans it already rejected;
this stores the good records in one durable batch and folds repeated ids with different content
into the rejections, so one bad span never blocks a batch and nothing stored is overwritten.

A record the database refuses as data (``UnstorableData``: a value it can never hold, which the
receiver's checks should have caught) fails its whole batch's transaction. The batch is then
halved until the refused records stand alone: those are rejected with the database's reason and
every other record is stored, in a few transactions more (about 2·log2(n) per refused record)
instead of one per record. A batch that stores, the common case, costs nothing more.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from governance.errors import UnstorableData
from governance.pseudonyms import EntityPseudonyms
from governance.store import InsertResult, LineageStore
from lineage.v1.record import DecisionRecord

log = logging.getLogger(__name__)

# How many rejections an answer names one by one; the count always covers all of them.
MAX_NAMED_REJECTIONS = 5


@dataclass(frozen=True, slots=True)
class Rejection:
    """A span whose record was not stored: ``ref`` is its decision id, or its span id if unknown."""

    ref: str
    reason: str

    def __str__(self) -> str:
        return f"{self.ref}: {self.reason}"


@dataclass(slots=True)
class IngestOutcome:
    stored: int = 0
    duplicates: int = 0
    rejections: list[Rejection] = field(default_factory=list)

    def rejection_message(self) -> str:
        named = "; ".join(str(r) for r in self.rejections[:MAX_NAMED_REJECTIONS])
        more = len(self.rejections) - MAX_NAMED_REJECTIONS
        return named + (f"; and {more} more" if more > 0 else "")


@dataclass(slots=True)
class IngestStats:
    """Totals since start, logged at shutdown."""

    batches: int = 0
    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    ignored_spans: int = 0


class Ingestor:
    def __init__(self, store: LineageStore, pseudonyms: EntityPseudonyms | None = None) -> None:
        self._store = store
        self._pseudonyms = pseudonyms or EntityPseudonyms()
        self.stats = IngestStats()

    async def ingest(
        self,
        records: Sequence[DecisionRecord],
        rejections: Sequence[Rejection] = (),
        ignored_spans: int = 0,
    ) -> IngestOutcome:
        """Stores ``records`` durably, rejecting those the database refuses as data; raises
        StoreUnavailable if the batch was not stored."""
        result = InsertResult()
        outcome = IngestOutcome(rejections=list(rejections))
        # Before anything is stored or hashed: the raw key of a pseudonymised point never lands.
        stored = self._pseudonyms.stored_forms(records)
        await self._insert_isolating(stored, result, outcome.rejections)
        outcome.stored, outcome.duplicates = result.inserted, result.duplicates
        outcome.rejections.extend(
            Rejection(
                c.decision_id,
                f"already stored with different content (stored sha256 {c.stored_sha256[:12]}, "
                f"offered {c.offered_sha256[:12]}); the stored record is kept",
            )
            for c in result.conflicts
        )
        self.stats.batches += 1
        self.stats.stored += outcome.stored
        self.stats.duplicates += outcome.duplicates
        self.stats.rejected += len(outcome.rejections)
        self.stats.ignored_spans += ignored_spans
        if outcome.rejections:
            log.warning(
                "rejected %d decision span(s) of %d: %s",
                len(outcome.rejections),
                len(records) + len(rejections),
                outcome.rejection_message(),
            )
        return outcome

    async def _insert_isolating(
        self, records: Sequence[DecisionRecord], result: InsertResult, refused: list[Rejection]
    ) -> None:
        """Inserts ``records`` in order, adding to ``result``; a record the database refuses
        is found by halving the batch and added to ``refused`` (see the module docstring)."""
        try:
            part = await self._store.insert_many(records)
        except UnstorableData as e:
            if len(records) == 1:
                reason = f"the store cannot store this record ({e})"
                refused.append(Rejection(records[0].decision_id, reason))
                return
            log.debug("batch of %d refused as data (%s); halving it", len(records), e)
            half = len(records) // 2
            for piece in (records[:half], records[half:]):
                await self._insert_isolating(piece, result, refused)
            return
        result.inserted += part.inserted
        result.duplicates += part.duplicates
        result.conflicts.extend(part.conflicts)
