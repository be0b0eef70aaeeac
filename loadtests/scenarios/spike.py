"""Spike: ``--spike-users`` for a stage, ``--spike-peak`` at once for a stage, base again, stop.

Shows whether the gateway recovers its latency after a burst; the thresholds apply to the whole
run, burst included.
"""

from __future__ import annotations

from locust import LoadTestShape, task

from loadtests.grpc_user import ScoringUser


class SpikeUser(ScoringUser):
    scenario = "spike"

    @task
    def score(self) -> None:
        super().score()


class Spike(LoadTestShape):
    def tick(self) -> tuple[int, float] | None:
        options = self.runner.environment.parsed_options if self.runner else None
        base = int(getattr(options, "spike_users", 4))
        seconds = float(getattr(options, "spike_seconds", 5.0))
        peak = int(getattr(options, "spike_peak", 32))
        stage = int(self.get_run_time() // seconds)
        if stage >= 3:
            return None
        # The burst arrives within a second; the drop back is as abrupt.
        return (peak, float(peak)) if stage == 1 else (base, float(peak))
