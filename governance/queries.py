"""Answers to lineage questions, transport-free; the LineageService servicer converts."""

from __future__ import annotations

from governance.errors import DecisionNotFound
from governance.ids import canonical_decision_id
from governance.store import LineageStore, StoredDecision


class LineageQueries:
    def __init__(self, store: LineageStore) -> None:
        self._store = store

    async def get_decision(self, decision_id: str) -> StoredDecision:
        """The stored decision; InvalidDecisionId or DecisionNotFound otherwise."""
        canonical = canonical_decision_id(decision_id)
        stored = await self._store.get(canonical)
        if stored is None:
            raise DecisionNotFound(f"no decision with id {canonical} in the lineage store")
        return stored
