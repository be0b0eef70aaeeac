"""How attempts at a model version behave: retries, hedges, circuit breakers.

Compiled from the routing file's ``retry``, ``hedge`` and ``circuit_breaker`` keys
(``gateway.routing.compiled``); the attempt caller, the budgets and the breakers read them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    num_retries: int = 1
    backoff_s: float = 0.002
    budget_ratio: float = 0.2
    min_retries: int = 10


@dataclass(frozen=True, slots=True)
class HedgePolicy:
    delay_s: float
    use_p95: bool = False


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    consecutive_failures: int = 5
    error_rate: float = 0.5
    window_s: float = 10.0
    min_requests: int = 20
    open_s: float = 2.0
    half_open_probes: int = 1
