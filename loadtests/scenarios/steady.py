"""Steady load: ``-u`` users calling Score back to back (or every ``--pace-ms``) for ``-t``."""

from locust import task

from loadtests.grpc_user import ScoringUser


class SteadyUser(ScoringUser):
    scenario = "steady"

    @task
    def score(self) -> None:
        super().score()
