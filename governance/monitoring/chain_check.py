"""The hash chain verified in the background, its last result exported for the chain alert.

``scoregate lineage verify`` checks the chain when someone runs it; an alert needs the store to
check on a schedule and say what it found. Each run is the same full ``verify`` (every chained
entry and the checkpoints of ``--checkpoint-file``), so it is meant to run hours apart. Until
the first run ends nothing is exported, so an alert on the result cannot fire on a store that
has not checked yet.

Families: ``scoregate_lineage_chain_verify_ok`` (1 the chain verifies, 0 it does not),
``scoregate_lineage_chain_verify_timestamp_seconds`` (when the last run ended) and
``scoregate_lineage_chain_verify_entries`` (the entries it checked).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from governance.chain import read_checkpoints
from governance.store import LineageStore

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ChainResult:
    ok: bool
    checked: int
    finished_at: float
    problem: str


class ChainCheck(Collector):
    """Runs ``verify`` every ``interval_s``; serves the last result."""

    def __init__(self, store: LineageStore, checkpoint_file: Path | None) -> None:
        self._store = store
        self._checkpoint_file = checkpoint_file
        self.last: ChainResult | None = None

    async def check(self) -> ChainResult:
        checkpoints = (
            []
            if self._checkpoint_file is None or not self._checkpoint_file.exists()
            else await asyncio.to_thread(read_checkpoints, self._checkpoint_file)
        )
        report = await self._store.verify(checkpoints)
        self.last = ChainResult(report.ok, report.checked, time.time(), report.problem)
        if report.ok:
            log.info("chain verified: %d entries", report.checked)
        else:
            log.error("chain verification FAILED: %s", report.problem)
        return self.last

    async def run(self, interval_s: float) -> None:
        """Checks at once, then every ``interval_s``; a run that cannot read the store is
        logged and leaves the last result (a failed read is not a broken chain)."""
        while True:
            try:
                await self.check()
            except Exception:
                log.exception("chain verification could not run; keeping the last result")
            await asyncio.sleep(interval_s)

    def collect(self) -> Iterable[GaugeMetricFamily]:
        last = self.last
        if last is None:
            return []
        return [
            GaugeMetricFamily(
                "scoregate_lineage_chain_verify_ok",
                "1 when the last verification found the chain and checkpoints intact, else 0.",
                value=1.0 if last.ok else 0.0,
            ),
            GaugeMetricFamily(
                "scoregate_lineage_chain_verify_timestamp_seconds",
                "When the last chain verification finished (Unix time).",
                value=last.finished_at,
            ),
            GaugeMetricFamily(
                "scoregate_lineage_chain_verify_entries",
                "Chained entries the last verification checked.",
                value=float(last.checked),
            ),
        ]

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return []
