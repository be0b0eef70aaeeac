"""Bulk scoring: ``-u`` users calling ScoreBatch back to back (or every ``--pace-ms``) for ``-t``,
each call ``--batch-rows`` sample rows in the ``--batch-form`` (columnar by default).

A call counts as failed unless every row came back as a decision with its model's identity. The
report names calls ``<decision point>/batch``; the summary adds the rows scored per second.
"""

from __future__ import annotations

from typing import ClassVar

import grpc
from locust import task
from locust.env import Environment

from loadtests.checks import Check, RunSummary
from loadtests.grpc_user import BATCH_ARM, ScoringUser
from runtimes.training.datasets import sample_requests
from scoring.v1.requests import score_batch_columns_request, score_batch_request


class BatchUser(ScoringUser):
    scenario = "batch"
    _features: ClassVar[dict[str, list[dict[str, float | str | bool]]]] = {}

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        options = environment.parsed_options
        self.rows: int = getattr(options, "batch_rows", 100)
        self.columns: bool = getattr(options, "batch_form", "columns") == "columns"
        if not 1 <= self.rows <= 1000:
            raise ValueError(f"--batch-rows must be 1..1000, got {self.rows}")
        features = self._features.get(self.decision_point)
        if features is None:
            features = sample_requests(self.decision_point, self.pool_size, seed=7)
            self._features[self.decision_point] = features
        self._pool = features

    @task
    def score_batch(self) -> None:
        tag = f"{self._random.getrandbits(48):012x}"
        rows = [
            (f"lt-{tag}-{i}", f"cust-{self._random.getrandbits(40):010x}", features)
            for i, features in enumerate(self._random.choices(self._pool, k=self.rows))
        ]
        build = score_batch_columns_request if self.columns else score_batch_request
        # Failures are already in Locust's stats (the interceptor checks every row).
        try:
            self.stub.ScoreBatch(build(self.decision_point, rows), timeout=self.timeout)
        except grpc.RpcError:
            return

    @classmethod
    def scenario_checks(cls, environment: Environment, summary: RunSummary) -> list[Check]:
        rows = getattr(environment.parsed_options, "batch_rows", 100)
        calls = summary.arms.get(BATCH_ARM, 0)
        form = getattr(environment.parsed_options, "batch_form", "columns")
        return [
            Check(
                "rows scored",
                None,
                f"{calls * rows:,} rows in {calls:,} answered calls of {rows} ({form} form); "
                f"{summary.rps * calls / max(summary.requests, 1) * rows:,.0f} rows/s",
            )
        ]
