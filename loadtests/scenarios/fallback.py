"""Fallback under failure: steady load while ``--fault-command`` stops the runtime mid-run.

Every call must still be answered (the fail-ratio threshold, 0 by default), by the fallback chain
once the runtime is gone; the fallback share is reported.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import subprocess
from typing import Any

import gevent
from locust import events, task
from locust.env import Environment

from loadtests.checks import Check, RunSummary, fallback_check
from loadtests.grpc_user import ScoringUser

logger = logging.getLogger("loadtests")


class FallbackUser(ScoringUser):
    scenario = "fallback"

    @task
    def score(self) -> None:
        super().score()

    @classmethod
    def scenario_checks(cls, environment: Environment, summary: RunSummary) -> list[Check]:
        return [fallback_check(summary.arms, summary.failures)]


def _inject_fault(command: str) -> None:
    logger.info("fault: running %s", command)
    argv = shlex.split(command)
    if len(argv) == 3 and argv[0] == "kill" and argv[1].startswith("-") and argv[2].isdigit():
        # Signalled directly: forking a process that runs gRPC's threads (Locust's) can hang the
        # child before it execs, and then the fault never happens.
        name = argv[1][1:]
        signum = int(name) if name.isdigit() else signal.Signals["SIG" + name.removeprefix("SIG")]
        os.kill(int(argv[2]), signum)
        logger.info("fault: sent %s to %s", argv[1], argv[2])
        return
    result = subprocess.run(argv, check=False, capture_output=True, timeout=60)
    logger.info("fault: exit code %d %s", result.returncode, result.stderr.decode().strip())


@events.test_start.add_listener
def _schedule_fault(environment: Environment, **_: Any) -> None:
    options = environment.parsed_options
    command = getattr(options, "fault_command", "")
    if not command:
        logger.warning("fallback scenario without --fault-command: nothing will be stopped")
        return
    gevent.spawn_later(float(getattr(options, "fault_at", 5.0)), _inject_fault, command)
