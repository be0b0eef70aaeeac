"""How busy the gateway's event loop is: the share of wall time it spends outside ``select``.

The micro-batcher reads it to tell a saturated gateway (its loop busy almost all the time, where
fewer and larger runtime calls free CPU for everything else) from one with spare time (where a
queued row should leave as soon as the call ahead returns); the shares seen at low and high
concurrency are in docs/performance-log.md.
"""

from __future__ import annotations

import selectors
import time
from typing import Any

# The smoothing's time constant: the busy share follows the last ~200 ms of the loop.
WINDOW_S = 0.2


class LoopLoad(selectors.DefaultSelector):
    """The platform's default selector, timing the loop around it: ``busy`` is the smoothed
    share of wall time the loop spent running callbacks rather than waiting in ``select``."""

    def __init__(self) -> None:
        super().__init__()
        self.busy = 0.0
        self._returned = time.perf_counter()

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, Any]]:
        entered = time.perf_counter()
        events: list[tuple[selectors.SelectorKey, Any]] = super().select(timeout)
        left = time.perf_counter()
        span = left - self._returned
        if span > 0:
            weight = min(1.0, span / WINDOW_S)
            self.busy += weight * ((entered - self._returned) / span - self.busy)
        self._returned = left
        return events
