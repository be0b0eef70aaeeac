"""Load shedding: a bound on requests in flight per gateway process.

Beyond the bound a request is refused at once (RESOURCE_EXHAUSTED) rather than queued: a queue
would make every admitted request slower and the refused ones late. The check is a counter
comparison, so a refusal costs microseconds in the gateway. While the gateway stops, the gate
is closed: every new request is refused (UNAVAILABLE, so the caller goes to another replica),
and ``idle`` tells the server when the last admitted one has left.
"""

from __future__ import annotations

import asyncio

from gateway.metrics import GatewayMetrics


class AdmissionGate:
    __slots__ = ("_idle", "_metrics", "closed", "in_flight", "limit")

    def __init__(self, limit: int | None, metrics: GatewayMetrics) -> None:
        self.limit = limit
        self.in_flight = 0
        self.closed = False
        self._metrics = metrics
        self._idle: asyncio.Event | None = None

    def close(self) -> None:
        """Admits nothing more (``try_enter`` is False and ``closed`` says why)."""
        self.closed = True

    async def idle(self, timeout_s: float) -> bool:
        """Waits up to ``timeout_s`` for the requests in flight to leave; True if they did."""
        if self.in_flight == 0:
            return True
        self._idle = asyncio.Event()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    def try_enter(self) -> bool:
        if self.closed:
            return False
        if self.limit is not None and self.in_flight >= self.limit:
            self._metrics.shed.inc()
            return False
        self.in_flight += 1
        self._metrics.in_flight.inc()
        return True

    def leave(self) -> None:
        self.in_flight -= 1
        self._metrics.in_flight.dec()
        if self._idle is not None and self.in_flight == 0:
            self._idle.set()
