"""The canary plan: which candidate to ramp where, in which steps, and what it must show.

Validated strictly (unknown keys, bad values and unordered steps are refused), and every
problem is reported with the path of its key, as ``scoregate`` reports a bad routes file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gateway.canary.errors import PlanError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Candidate(_Strict):
    model: str = Field(min_length=1)
    """The model's name in the routes file's ``models``."""
    version: str = Field(min_length=1)
    """Its version (not an alias): what the canary arm serves."""


class Thresholds(_Strict):
    """What the canary may show against the primary over a step's window; null turns one off."""

    max_error_rate: float | None = Field(default=0.01, ge=0, le=1)
    max_error_rate_increase: float | None = Field(default=0.005, ge=0, le=1)
    max_fallback_rate_increase: float | None = Field(default=0.02, ge=0, le=1)
    max_latency_p99_ms: float | None = Field(default=None, gt=0)
    max_latency_p99_increase_ms: float | None = Field(default=50.0, ge=0)
    max_score_psi: float | None = Field(default=0.25, ge=0)
    max_decision_mix_shift: float | None = Field(default=0.1, ge=0, le=1)


Weight = Annotated[float, Field(gt=0, le=100)]


class CanaryPlan(_Strict):
    decision_point: str = Field(min_length=1)
    candidate: Candidate
    steps: list[Weight] = Field(min_length=1)
    """Canary weights in percent, rising, ending at 100."""
    dwell_s: float = Field(gt=0)
    """How long each step runs before it can be promoted."""
    min_decisions: int = Field(ge=1)
    """Canary-arm decisions a step needs before any verdict but hold."""
    max_holds: int = Field(default=3, ge=0)
    """Extra dwells a step may wait for min_decisions before the run rolls back."""
    check_interval_s: float = Field(default=10.0, gt=0)
    """How often the evidence is read during a dwell (a crossing rolls back at once)."""
    thresholds: Thresholds = Thresholds()

    @model_validator(mode="after")
    def _rising_to_100(self) -> Self:
        for i in range(1, len(self.steps)):
            if self.steps[i] <= self.steps[i - 1]:
                raise ValueError(
                    f"steps[{i}]: {self.steps[i]} is not above steps[{i - 1}] "
                    f"({self.steps[i - 1]}); steps must rise"
                )
        if self.steps[-1] != 100:
            raise ValueError(f"steps[{len(self.steps) - 1}]: the last step must be 100")
        return self


def parse_plan(text: str, source: str) -> CanaryPlan:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise PlanError(f"{source}: not YAML: {e}") from None
    if not isinstance(raw, dict):
        raise PlanError(f"{source}: a canary plan is a mapping (decision_point, candidate, ...)")
    try:
        return CanaryPlan.model_validate(raw)
    except ValidationError as e:
        lines = []
        for err in e.errors():
            path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"]).lstrip(
                "."
            )
            message = err["msg"].removeprefix("Value error, ")
            lines.append(f"  {path}: {message}" if path else f"  {message}")
        raise PlanError(f"{source}: invalid canary plan:\n" + "\n".join(lines)) from None


def load_plan(path: Path) -> CanaryPlan:
    try:
        text = path.read_text()
    except OSError as e:
        raise PlanError(f"{path}: cannot read the plan: {e.strerror}") from None
    return parse_plan(text, str(path))
