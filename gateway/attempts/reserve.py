"""How much of a deadline the fallback chain keeps back: the configured reserve, or more when
this gateway has been seen to need more.

When the routed model does not answer, the call is decided by the chain after the attempt's own
deadline, then recorded (the outbox's durable commit) and answered; all of that must fit in the
reserve, or the caller's deadline passes first. What it costs depends on the machine, the load
and the disk, so the gateway measures it on every decision: the time from the moment it stopped
waiting for a model (the answer's arrival, or the attempt's deadline if that came first: the
event loop wakes a little after it) to the record's commit. The reserve is the configured floor,
raised to ``MARGIN`` times a high quantile of recent costs when those exceed it; the raise never
takes more than half of a call's time left, so the model keeps most of the time it was given.
The figures the default was sized from are in docs/routing.md ("Deadlines and the reserve").
"""

from __future__ import annotations

from array import array

from gateway.deadline import Deadline

# Recent costs kept (a ring): a few seconds of traffic at production rates, enough for a stable
# 99th percentile, small enough to follow a change of load.
WINDOW = 1024
# The quantile is recomputed every RECOMPUTE_EVERY observations, not per call: sorting the
# window is ~50 us, a per-call cost of well under a microsecond this way.
RECOMPUTE_EVERY = 128
# A first estimate as soon as a few costs are in, so a fresh gateway is not on the floor alone.
FIRST_ESTIMATE_AFTER = 16
QUANTILE = 0.99
# Beyond the observed quantile: the answer's own send after the commit, and rarer stalls.
MARGIN = 1.5
# Of a call's time left, at most this share is held back from the model by a measured raise.
MAX_SHARE = 0.5


class ReserveEstimate:
    """The measured cost of deciding, recording and answering once the model is done with."""

    __slots__ = ("_costs", "_next", "_seen", "measured_s")

    def __init__(self) -> None:
        self._costs = array("d")
        self._next = 0
        self._seen = 0
        self.measured_s = 0.0
        """``MARGIN`` times the recent ``QUANTILE`` cost, in seconds (0 until measured)."""

    def observe(self, cost_s: float) -> None:
        if len(self._costs) < WINDOW:
            self._costs.append(cost_s)
        else:
            self._costs[self._next] = cost_s
            self._next = (self._next + 1) % WINDOW
        self._seen += 1
        if self._seen % RECOMPUTE_EVERY == 0 or self._seen == FIRST_ESTIMATE_AFTER:
            ordered = sorted(self._costs)
            self.measured_s = MARGIN * ordered[int(QUANTILE * (len(ordered) - 1))]

    def reserve(self, floor_s: float, deadline: Deadline) -> float:
        """What to hold back from a call due at ``deadline`` whose chain asks ``floor_s``."""
        if self.measured_s <= floor_s:
            return floor_s  # the common case: no clock read, no min/max
        return max(floor_s, min(self.measured_s, MAX_SHARE * deadline.remaining()))
