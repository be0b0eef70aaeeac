"""Load shedding: a bound on requests in flight per gateway process.

Beyond the bound a request is refused at once (RESOURCE_EXHAUSTED) rather than queued: a queue
would make every admitted request slower and the refused ones late. The check is a counter
comparison, so a refusal costs microseconds in the gateway.
"""

from __future__ import annotations

from gateway.metrics import GatewayMetrics


class AdmissionGate:
    __slots__ = ("_metrics", "in_flight", "limit")

    def __init__(self, limit: int | None, metrics: GatewayMetrics) -> None:
        self.limit = limit
        self.in_flight = 0
        self._metrics = metrics

    def try_enter(self) -> bool:
        if self.limit is not None and self.in_flight >= self.limit:
            self._metrics.shed.inc()
            return False
        self.in_flight += 1
        self._metrics.in_flight.inc()
        return True

    def leave(self) -> None:
        self.in_flight -= 1
        self._metrics.in_flight.dec()
