"""Step ramp: ``--step-users`` more users every ``--step-seconds`` up to ``--step-peak``, then stop.

Shows where latency bends as load grows; the thresholds apply to the whole run.
"""

from __future__ import annotations

from locust import LoadTestShape, task

from loadtests.grpc_user import ScoringUser


class StepUser(ScoringUser):
    scenario = "step_ramp"

    @task
    def score(self) -> None:
        super().score()


class StepRamp(LoadTestShape):
    """(users, spawn rate) per step; the run ends after the step that reaches the peak."""

    def tick(self) -> tuple[int, float] | None:
        options = self.runner.environment.parsed_options if self.runner else None
        step = int(getattr(options, "step_users", 5))
        seconds = float(getattr(options, "step_seconds", 5.0))
        peak = int(getattr(options, "step_peak", 20))
        stage = int(self.get_run_time() // seconds)
        users = step * (stage + 1)
        if users > max(peak, step):
            return None
        return users, float(step)
