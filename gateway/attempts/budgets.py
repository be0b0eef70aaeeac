"""Retry budgets and observed latencies: the per-route state behind retries and hedges.

A ``RetryBudget`` is a token bucket per decision point: every request deposits ``ratio`` of a
token, every retry or hedge withdraws one. So under a full outage retries stay within
``min_retries + ratio * requests``, and an outage cannot multiply the load on the runtimes. The
bucket starts with, and holds at most, ``min_retries`` plus ten tokens, so a long healthy spell
cannot bank a retry storm either.
"""

from __future__ import annotations

from collections import deque

from gateway.attempts.policies import RetryPolicy

BANKED_TOKENS = 10.0
LATENCY_SAMPLES = 256
_MIN_SAMPLES_FOR_P95 = 20
_RECOMPUTE_EVERY = 16


class RetryBudget:
    __slots__ = ("_cap", "_ratio", "tokens")

    def __init__(self, policy: RetryPolicy) -> None:
        self._ratio = policy.budget_ratio
        self._cap = policy.min_retries + BANKED_TOKENS
        self.tokens = float(policy.min_retries)

    def update(self, policy: RetryPolicy) -> None:
        self._ratio = policy.budget_ratio
        self._cap = policy.min_retries + BANKED_TOKENS
        self.tokens = min(self.tokens, self._cap)

    def deposit(self) -> None:
        """One request came in."""
        self.tokens = min(self._cap, self.tokens + self._ratio)

    def withdraw(self) -> bool:
        """Takes a token for one retry or hedge; False when the budget is spent."""
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class LatencyWindow:
    """The last answers' latencies for one model version; its p95 paces hedges."""

    __slots__ = ("_count", "_p95", "_samples")

    def __init__(self) -> None:
        self._samples: deque[float] = deque(maxlen=LATENCY_SAMPLES)
        self._count = 0
        self._p95: float | None = None

    def add(self, seconds: float) -> None:
        self._samples.append(seconds)
        self._count += 1
        if self._count % _RECOMPUTE_EVERY == 0 and len(self._samples) >= _MIN_SAMPLES_FOR_P95:
            ordered = sorted(self._samples)
            self._p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]

    def p95(self) -> float | None:
        return self._p95
