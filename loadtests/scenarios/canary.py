"""Canary: steady load with a fresh entity key per call, reporting each arm's share.

With ``--canary-weight W`` the run fails when the canary's share is outside W's binomial bound
(``--canary-sigmas``); without it, or when the routes have no canary, the share is reported and
the check is skipped.
"""

from __future__ import annotations

from locust import task
from locust.env import Environment

from loadtests.checks import Check, RunSummary, canary_check
from loadtests.grpc_user import ScoringUser


class CanaryUser(ScoringUser):
    scenario = "canary"

    @task
    def score(self) -> None:
        super().score()

    @classmethod
    def scenario_checks(cls, environment: Environment, summary: RunSummary) -> list[Check]:
        options = environment.parsed_options
        weight = getattr(options, "canary_weight", None)
        sigmas = float(getattr(options, "canary_sigmas", 4.0))
        return [canary_check(summary.arms, weight, sigmas)]
