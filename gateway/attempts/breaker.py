"""Circuit breakers, one per runtime endpoint: stop calling what keeps failing.

::

    CLOSED --(N consecutive failures, or error rate >= r over the window)--> OPEN
    OPEN --(open_s elapsed; next call is let through as a probe)--> HALF_OPEN
    HALF_OPEN --(probe fails)--> OPEN;  --(half_open_probes successes)--> CLOSED

While open, ``allow`` says no at once, so the router goes straight to another endpoint or the
fallback. Half-open lets one probe through at a time. A call that is abandoned (a hedge's loser)
releases its slot without counting either way. Time is passed in, so tests need no clock.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from gateway.attempts.policies import BreakerPolicy

CLOSED = "closed"
HALF_OPEN = "half_open"
OPEN = "open"
STATE_VALUES = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}

StateListener = Callable[[str, str], None]
"""Called with (endpoint, new state) on every transition."""


class CircuitBreaker:
    __slots__ = (
        "_consecutive",
        "_failures_in_window",
        "_listener",
        "_opened_at",
        "_probe_in_flight",
        "_probe_successes",
        "_window",
        "endpoint",
        "policy",
        "state",
    )

    def __init__(self, endpoint: str, policy: BreakerPolicy, listener: StateListener) -> None:
        self.endpoint = endpoint
        self.policy = policy
        self.state = CLOSED
        self._listener = listener
        self._consecutive = 0
        self._window: deque[tuple[float, bool]] = deque()
        self._failures_in_window = 0
        self._opened_at = 0.0
        self._probe_in_flight = False
        self._probe_successes = 0

    def _set(self, state: str, now: float) -> None:
        if state == self.state:
            return
        self.state = state
        if state == OPEN:
            self._opened_at = now
            self._probe_successes = 0
        elif state == CLOSED:
            self._consecutive = 0
            self._window.clear()
            self._failures_in_window = 0
        self._listener(self.endpoint, state)

    def allow(self, now: float) -> bool:
        """May a call go to this endpoint now? A yes in half-open reserves the probe slot."""
        if self.state == CLOSED:
            return True
        if self.state == OPEN:
            if now - self._opened_at < self.policy.open_s:
                return False
            self._set(HALF_OPEN, now)
        if self._probe_in_flight:
            return False
        self._probe_in_flight = True
        return True

    def _trim(self, now: float) -> None:
        horizon = now - self.policy.window_s
        window = self._window
        while window and window[0][0] < horizon:
            if not window.popleft()[1]:
                self._failures_in_window -= 1

    def success(self, now: float) -> None:
        if self.state == HALF_OPEN:
            self._probe_in_flight = False
            self._probe_successes += 1
            if self._probe_successes >= self.policy.half_open_probes:
                self._set(CLOSED, now)
            return
        self._consecutive = 0
        self._window.append((now, True))
        self._trim(now)

    def failure(self, now: float) -> None:
        if self.state == HALF_OPEN:
            self._probe_in_flight = False
            self._set(OPEN, now)
            return
        if self.state == OPEN:
            return  # a call let through before the circuit opened
        self._consecutive += 1
        self._window.append((now, False))
        self._failures_in_window += 1
        self._trim(now)
        policy = self.policy
        calls = len(self._window)
        if self._consecutive >= policy.consecutive_failures or (
            calls >= policy.min_requests and self._failures_in_window >= policy.error_rate * calls
        ):
            self._set(OPEN, now)

    def release(self) -> None:
        """An allowed call was abandoned (cancelled) with no outcome."""
        if self.state == HALF_OPEN:
            self._probe_in_flight = False


class Breakers:
    """The breaker of every endpoint, created on first use; survives config reloads."""

    def __init__(self, policy: BreakerPolicy, listener: StateListener | None = None) -> None:
        self._policy = policy
        self._listener: StateListener = listener or (lambda endpoint, state: None)
        self._breakers: dict[str, CircuitBreaker] = {}

    def get(self, endpoint: str) -> CircuitBreaker:
        breaker = self._breakers.get(endpoint)
        if breaker is None:
            breaker = CircuitBreaker(endpoint, self._policy, self._listener)
            self._breakers[endpoint] = breaker
            self._listener(endpoint, CLOSED)
        return breaker

    def set_policy(self, policy: BreakerPolicy) -> None:
        """A reloaded config's thresholds apply from the next call; states are kept."""
        self._policy = policy
        for breaker in self._breakers.values():
            breaker.policy = policy

    def states(self) -> dict[str, str]:
        return {e: b.state for e, b in self._breakers.items()}
