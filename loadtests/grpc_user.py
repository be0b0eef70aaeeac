"""The Locust side of the kit: a gRPC ``User`` for ScoringService and the kit's run options.

Importing this module (as every scenario locustfile does) makes grpc cooperate with gevent, adds
the kit's options to Locust's command line, and registers the listener that turns the run's stats
into a summary, applies the thresholds and sets the exit code. Locust itself monkey-patches the
process with gevent on import, so only Locust processes import this.

Each call is reported to Locust by a client interceptor as request type ``Score`` and name
``<decision point>/<arm>`` ("card-fraud/primary", "card-fraud/fallback"; "-" when the call
failed), so the report shows per-arm latency and the summary can count arm shares.
"""

from __future__ import annotations

import collections
import json
import logging
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import grpc
import grpc.experimental.gevent as grpc_gevent
from locust import User, events
from locust.argument_parser import LocustArgumentParser
from locust.env import Environment

from loadtests.checks import (
    Check,
    RunSummary,
    Thresholds,
    check_batch_response,
    check_response,
)
from loadtests.credentials import Credentials
from scoring.v1 import scoring_pb2, scoring_pb2_grpc
from scoring.v1.requests import score_request

# grpc's own threads would block gevent's loop; this makes its completion queue cooperative.
grpc_gevent.init_gevent()

logger = logging.getLogger("loadtests")


@events.init_command_line_parser.add_listener
def _add_options(parser: LocustArgumentParser, **_: Any) -> None:
    group = parser.add_argument_group("scoregate", "Options of the scoregate load-testing kit")
    group.add_argument(
        "--decision-point",
        default="card-fraud",
        help="decision point every request scores (card-fraud, credit-risk, churn, trade-anomaly)",
    )
    group.add_argument(
        "--request-timeout", type=float, default=2.0, help="deadline of each Score call, seconds"
    )
    group.add_argument(
        "--pace-ms",
        type=float,
        default=0.0,
        help="think time of each user between calls, ms (0: each user calls back to back)",
    )
    group.add_argument(
        "--p99-ms", type=float, default=None, help="fail the run when p99 exceeds this, ms"
    )
    group.add_argument("--tls-ca-file", default="", help="the gateway's CA: call it over TLS")
    group.add_argument("--tls-cert-file", default="", help="client certificate (mutual TLS)")
    group.add_argument("--tls-key-file", default="", help="the client certificate's key")
    group.add_argument(
        "--bearer-token-file",
        default="",
        help="file holding the bearer token (JWT) each call sends",
    )
    group.add_argument(
        "--max-fail-ratio",
        type=float,
        default=0.0,
        help="fail the run when the share of failed requests exceeds this (0..1)",
    )
    group.add_argument(
        "--summary-json", default="", help="write the run's summary and verdicts to this file"
    )
    group.add_argument(
        "--canary-weight",
        type=float,
        default=None,
        help="canary scenario: the canary weight the routes configure (0..1); unset: not checked",
    )
    group.add_argument(
        "--canary-sigmas",
        type=float,
        default=4.0,
        help="canary scenario: width of the binomial bound, in standard deviations",
    )
    group.add_argument(
        "--fault-at", type=float, default=5.0, help="fallback scenario: seconds before the fault"
    )
    group.add_argument(
        "--fault-command",
        default="",
        help="fallback scenario: command that stops the runtime, e.g. 'kill -TERM 1234' or "
        "'kubectl delete pod -l ...'",
    )
    group.add_argument(
        "--batch-rows", type=int, default=100, help="batch scenario: rows per ScoreBatch call"
    )
    group.add_argument(
        "--batch-form",
        choices=("columns", "rows"),
        default="columns",
        help="batch scenario: ScoreBatch's columnar form (BatchColumns) or its row form",
    )
    for name, default in (("step", (5, 5.0, 20)), ("spike", (4, 5.0, 32))):
        users, seconds, peak = default
        group.add_argument(
            f"--{name}-users", type=int, default=users, help=f"{name} shape: base users"
        )
        group.add_argument(
            f"--{name}-seconds", type=float, default=seconds, help=f"{name} shape: stage length"
        )
        group.add_argument(f"--{name}-peak", type=int, default=peak, help=f"{name} shape: peak")


BATCH_ARM = "batch"
"""The arm part of a ScoreBatch call's name in the report: ``<decision point>/batch``."""


def batch_rows(request: scoring_pb2.ScoreBatchRequest) -> int:
    return len(request.columns.request_ids) if request.HasField("columns") else len(request.rows)


class _CallDetails(
    collections.namedtuple(
        "_CallDetails",
        ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression"),
    ),
    grpc.ClientCallDetails,  # type: ignore[misc]
):
    pass


class ScoringInterceptor(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Reports every unary call to Locust, and fails unusable answers; adds ``metadata`` (the
    bearer token) to every call, so that scenarios call the stub as they would without."""

    def __init__(
        self, environment: Environment, metadata: tuple[tuple[str, str], ...] = ()
    ) -> None:
        self._request_event = environment.events.request
        self._metadata = metadata

    def intercept_unary_unary(
        self, continuation: Callable[[Any, Any], Any], client_call_details: Any, request: Any
    ) -> Any:
        if self._metadata:
            d = client_call_details
            client_call_details = _CallDetails(
                d.method, d.timeout, (*(d.metadata or ()), *self._metadata), d.credentials,
                d.wait_for_ready, d.compression,
            )  # fmt: skip
        point = getattr(request, "decision_point", "") or "-"
        arm = "-"
        exception: Exception | None = None
        length = 0
        start = time.perf_counter()
        call = continuation(client_call_details, request)
        try:
            response = call.result()
        except grpc.RpcError as e:
            exception = e
            response = None
        elapsed_ms = (time.perf_counter() - start) * 1000.0
        if response is not None:
            length = response.ByteSize()
            arm = getattr(response, "arm", "") or "-"
            if isinstance(response, scoring_pb2.ScoreResponse):
                exception = check_response(response)
            elif isinstance(response, scoring_pb2.ScoreBatchResponse):
                # One entry per call, named by its kind: its rows are not decisions on one arm.
                arm = BATCH_ARM
                exception = check_batch_response(response, batch_rows(request))
        self._request_event.fire(
            request_type=client_call_details.method.rsplit("/", 1)[-1],
            name=f"{point}/{arm}",
            response_time=elapsed_ms,
            response_length=length,
            response=response,
            context=None,
            exception=exception,
        )
        return call


class ScoringUser(User):
    """A core banking system calling ScoringService/Score; ``--host`` is the gateway host:port.

    Scenarios subclass it; ``scenario_checks`` adds their own verdicts to the thresholds.
    """

    abstract = True
    scenario: ClassVar[str] = "custom"
    # Sample feature rows per decision point, built once per process (sample_requests is seeded).
    _templates: ClassVar[dict[str, list[scoring_pb2.ScoreRequest]]] = {}
    pool_size: ClassVar[int] = 512

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        if not self.host:
            raise ValueError("--host must be the gateway's host:port")
        options = environment.parsed_options
        self.decision_point: str = getattr(options, "decision_point", "card-fraud")
        self.timeout: float = getattr(options, "request_timeout", 2.0)
        self.pace_s: float = getattr(options, "pace_ms", 0.0) / 1000.0
        self.host_address = self.host.removeprefix("grpc://")
        credentials = Credentials.of(options)
        self._channel = grpc.intercept_channel(
            credentials.channel(self.host_address),
            ScoringInterceptor(environment, credentials.metadata()),
        )
        self.stub = scoring_pb2_grpc.ScoringServiceStub(self._channel)
        self._rows = self.templates(self.decision_point, self.pool_size)
        self._random = random.Random()

    def wait_time(self) -> float:
        return self.pace_s

    @classmethod
    def templates(cls, decision_point: str, n: int) -> list[scoring_pb2.ScoreRequest]:
        rows = cls._templates.get(decision_point)
        if rows is None:
            from runtimes.training.datasets import sample_requests

            rows = [
                score_request("", decision_point, "", features)
                for features in sample_requests(decision_point, n, seed=7)
            ]
            cls._templates[decision_point] = rows
        return rows

    def next_request(self) -> scoring_pb2.ScoreRequest:
        """A sample row with a fresh request id and entity key (so canaries split by weight)."""
        request = scoring_pb2.ScoreRequest()
        request.CopyFrom(self._random.choice(self._rows))
        request.request_id = f"lt-{self._random.getrandbits(64):016x}"
        request.entity_key = f"cust-{self._random.getrandbits(40):010x}"
        return request

    def score(self) -> scoring_pb2.ScoreResponse | None:
        """One Score call; failures are already in Locust's stats, so they end here."""
        try:
            response: scoring_pb2.ScoreResponse = self.stub.Score(
                self.next_request(), timeout=self.timeout
            )
        except grpc.RpcError:
            return None
        return response

    def on_stop(self) -> None:
        self._channel.close()

    @classmethod
    def scenario_checks(cls, environment: Environment, summary: RunSummary) -> list[Check]:
        return []


def summarize(environment: Environment, scenario: str) -> RunSummary:
    """The run's totals and answered requests per arm, from Locust's stats."""
    total = environment.stats.total
    arms: dict[str, int] = {}
    for entry in environment.stats.entries.values():
        arm = entry.name.rsplit("/", 1)[-1]
        if arm != "-":
            arms[arm] = arms.get(arm, 0) + entry.num_requests - entry.num_failures
    return RunSummary(
        scenario=scenario,
        requests=total.num_requests,
        failures=total.num_failures,
        p50_ms=float(total.get_response_time_percentile(0.5) or 0.0),
        p99_ms=float(total.get_response_time_percentile(0.99) or 0.0),
        rps=float(total.total_rps),
        arms=arms,
    )


@events.quitting.add_listener
def _apply_thresholds(environment: Environment, **_: Any) -> None:
    options = environment.parsed_options
    users = [c for c in environment.user_classes if issubclass(c, ScoringUser)]
    summary = summarize(environment, users[0].scenario if users else "custom")
    thresholds = Thresholds(
        p99_ms=getattr(options, "p99_ms", None),
        max_fail_ratio=getattr(options, "max_fail_ratio", 0.0),
    )
    summary.checks = thresholds.evaluate(summary)
    for user_class in users:
        summary.checks.extend(user_class.scenario_checks(environment, summary))
    for check in summary.checks:
        verdict = {True: "PASS", False: "FAIL", None: "INFO"}[check.ok]
        logger.info("%s %s: %s", verdict, check.name, check.detail)
    path = getattr(options, "summary_json", "")
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(summary.to_json(), indent=2) + "\n")
    environment.process_exit_code = 0 if summary.passed else 1
