"""Verdicts on a load run: response checks, thresholds and the canary's binomial bound.

Plain Python with no Locust import, so the same rules are unit-tested in-process and applied by
the Locust users (``loadtests.grpc_user``) and the scenarios.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

FALLBACK_ARM = "fallback"
CANARY_ARM = "canary"
# Response fields without which a decision cannot be acted on or traced to a model.
REQUIRED_FIELDS = ("decision_id", "decision", "model_name", "model_version")


class ResponseCheckError(Exception):
    """A ScoreResponse arrived but is unusable; Locust counts it as a failure."""


class ScoreResponseLike(Protocol):
    decision_id: str
    decision: str
    model_name: str
    model_version: str
    arm: str


def check_response(response: ScoreResponseLike) -> ResponseCheckError | None:
    """The reason a response cannot count as an answered decision, or None when it can."""
    missing = [name for name in REQUIRED_FIELDS if not getattr(response, name)]
    if missing:
        return ResponseCheckError(f"response without {', '.join(missing)}")
    return None


class ScoreBatchResponseLike(Protocol):
    @property
    def results(self) -> Any: ...


def check_batch_response(response: ScoreBatchResponseLike, rows: int) -> ResponseCheckError | None:
    """Why a ScoreBatch answer cannot count as ``rows`` answered decisions, or None: one result
    per row, each a decision with its model's identity (a row error fails the call here, since a
    load test's rows are all valid)."""
    results = list(response.results)
    if len(results) != rows:
        return ResponseCheckError(f"{len(results)} results for {rows} rows")
    for i, result in enumerate(results):
        if result.WhichOneof("result") != "decision":
            error = result.error
            return ResponseCheckError(f"row {i} not scored: {error.code}: {error.message}")
        problem = check_response(result.decision)
        if problem is not None:
            return ResponseCheckError(f"row {i}: {problem}")
    return None


@dataclass(frozen=True)
class Check:
    """One named verdict; ``ok`` None means it was not checked (reported, never failing)."""

    name: str
    ok: bool | None
    detail: str


@dataclass(frozen=True)
class Thresholds:
    """What makes a run fail: its p99 and its share of failed requests."""

    p99_ms: float | None = None
    max_fail_ratio: float = 0.0

    def evaluate(self, summary: RunSummary) -> list[Check]:
        checks = []
        if summary.requests == 0:
            checks.append(Check("requests", False, "no request was made"))
        ratio = summary.fail_ratio
        checks.append(
            Check(
                "fail ratio",
                ratio <= self.max_fail_ratio,
                f"{summary.failures}/{summary.requests} = {ratio:.4f} "
                f"(limit {self.max_fail_ratio:.4f})",
            )
        )
        if self.p99_ms is None:
            checks.append(Check("p99", None, f"{summary.p99_ms:.1f} ms (no limit set)"))
        else:
            checks.append(
                Check(
                    "p99",
                    summary.p99_ms <= self.p99_ms,
                    f"{summary.p99_ms:.1f} ms (limit {self.p99_ms:.1f} ms)",
                )
            )
        return checks


@dataclass
class RunSummary:
    """What a run did, as written to its summary JSON."""

    scenario: str
    requests: int
    failures: int
    p50_ms: float
    p99_ms: float
    rps: float
    # Answered requests per route arm ("primary", "canary", "fallback", ...), failures excluded.
    arms: dict[str, int] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)

    @property
    def fail_ratio(self) -> float:
        return self.failures / self.requests if self.requests else 0.0

    def arm_share(self, arm: str) -> float:
        answered = sum(self.arms.values())
        return self.arms.get(arm, 0) / answered if answered else 0.0

    @property
    def passed(self) -> bool:
        return all(c.ok is not False for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "requests": self.requests,
            "failures": self.failures,
            "fail_ratio": self.fail_ratio,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "rps": self.rps,
            "arms": dict(self.arms),
            "arm_share": {arm: self.arm_share(arm) for arm in self.arms},
            "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in self.checks],
            "passed": self.passed,
        }


def binomial_bound(weight: float, trials: int, z: float) -> float:
    """Half-width of the normal approximation to a share's binomial spread at ``z`` sigmas."""
    if trials <= 0:
        return 1.0
    return z * math.sqrt(weight * (1.0 - weight) / trials)


def canary_check(arms: Mapping[str, int], weight: float | None, z: float = 4.0) -> Check:
    """Whether the canary's share of answers fits its configured weight.

    Each request carries a fresh entity key, so stickiness (a hash of the key) makes every request
    an independent draw and the canary count is binomial(n, weight).
    """
    answered = sum(arms.values())
    seen = arms.get(CANARY_ARM, 0)
    share = seen / answered if answered else 0.0
    if weight is None:
        if seen == 0:
            detail = "routes have no canary (no --canary-weight given, no canary answers): skipped"
        else:
            detail = f"canary share {share:.4f} of {answered}; no --canary-weight to check against"
        return Check("canary share", None, detail)
    bound = binomial_bound(weight, answered, z)
    ok = answered > 0 and abs(share - weight) <= bound
    return Check(
        "canary share",
        ok,
        f"{seen}/{answered} = {share:.4f}, expected {weight:.4f} ± {bound:.4f} ({z:g} sigma)",
    )


def fallback_check(arms: Mapping[str, int], failures: int) -> Check:
    """Reports the fallback share; fails only through the fail-ratio threshold."""
    answered = sum(arms.values())
    seen = arms.get(FALLBACK_ARM, 0)
    share = seen / answered if answered else 0.0
    detail = f"{seen}/{answered} answered by a fallback = {share:.4f}"
    if seen == 0 and failures:
        detail += "; no answer came from a fallback (does the gateway have fallbacks?)"
    return Check("fallback share", None, detail)
