"""Locust scenarios (locustfiles) for ScoringService; run them with ``python -m loadtests run``.

steady      fixed users for a fixed time: the release-to-release comparison
step_ramp   users added in steps up to a peak (a LoadTestShape): where does latency bend
spike       a base load, a sudden burst, back to base: recovery after a spike
canary      steady load reporting the canary's share, checked against --canary-weight
fallback    steady load while --fault-command stops the runtime: every call must still answer
batch       steady ScoreBatch calls of --batch-rows rows (columnar form by default): bulk scoring
"""

from pathlib import Path

SCENARIOS = ("steady", "step_ramp", "spike", "canary", "fallback", "batch")


def locustfile(scenario: str) -> Path:
    """The locustfile of a scenario."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; one of {', '.join(SCENARIOS)}")
    return Path(__file__).with_name(f"{scenario}.py")
