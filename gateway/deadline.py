"""A request's one deadline, as a moment on the monotonic clock.

It is made once per call, from the route's timeout and the caller's gRPC deadline, and handed
down as it is: every layer asks it how long is left at the moment it needs to know, so no layer
converts between remaining seconds, absolute times and relative timeouts. Only the runtime
client turns it into a gRPC timeout, at the moment of the call.
"""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], float]
"""Seconds on a monotonic clock (``time.monotonic`` unless a test injects another)."""


class Deadline:
    __slots__ = ("at",)

    def __init__(self, at: float) -> None:
        self.at = at
        """The moment, in ``time.monotonic`` seconds, by which the work must be done."""

    @classmethod
    def after(cls, seconds: float, now: float | None = None) -> Deadline:
        return cls((time.monotonic() if now is None else now) + seconds)

    @classmethod
    def of_call(
        cls, started: float, timeout_s: float, caller_remaining_s: float | None
    ) -> Deadline:
        """The route's timeout from ``started``, or the caller's deadline if that is sooner."""
        if caller_remaining_s is not None and caller_remaining_s < timeout_s:
            return cls(started + caller_remaining_s)
        return cls(started + timeout_s)

    def remaining(self, now: float | None = None) -> float:
        """Seconds left (zero or less once passed)."""
        return self.at - (time.monotonic() if now is None else now)

    def earlier(self, seconds: float) -> Deadline:
        """This deadline less ``seconds`` (e.g. the time a fallback keeps in reserve)."""
        return Deadline(self.at - seconds)

    @staticmethod
    def latest(deadlines: list[Deadline]) -> Deadline:
        return Deadline(max(d.at for d in deadlines))

    def __repr__(self) -> str:
        return f"Deadline(in {self.remaining() * 1000:.1f} ms)"
