"""A real Prometheus server and promtool, for tests of the chart's alert rules and dashboard.

``/usr/bin/prometheus`` and ``/usr/bin/promtool`` come from Debian's ``prometheus`` package
(``make system-deps``). ``prometheus_server`` starts one on a free loopback port with its own
storage directory, scraping the given targets and evaluating the given rule file every
``interval``; it is stopped (and killed if it does not stop) when the block exits, whether the
test passed or not, so no server outlives its test.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from loadtests.local.topology import free_port

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


def require_promtool() -> str:
    if not Path(PROMTOOL).is_file():
        pytest.skip(f"promtool not found at {PROMTOOL} (make system-deps installs it)")
    return PROMTOOL


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Runs promtool; the caller asserts on its return code and output."""
    return subprocess.run(
        [require_promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def rule_groups(prometheus_rule: Mapping[str, Any]) -> dict[str, Any]:
    """A PrometheusRule object's groups as a Prometheus rule file (what the operator loads)."""
    return {"groups": prometheus_rule["spec"]["groups"]}


def write_rule_file(path: Path, prometheus_rule: Mapping[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(rule_groups(prometheus_rule), sort_keys=False))
    return path


@dataclass
class PrometheusServer:
    url: str
    log: Path

    def api(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=10) as reply:
            body = json.loads(reply.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[tuple[dict[str, str], float]]:
        """An instant query's samples: (labels, value)."""
        data = self.api("/api/v1/query", query=expr)
        return [(s["metric"], float(s["value"][1])) for s in data["result"]]

    def alerts(self, state: str = "firing") -> list[dict[str, str]]:
        """The labels of the alerts in ``state`` (firing or pending)."""
        return [a["labels"] for a in self.api("/api/v1/alerts")["alerts"] if a["state"] == state]

    def targets_up(self) -> dict[str, str]:
        """Each scrape job's health (up, down, unknown)."""
        active = self.api("/api/v1/targets")["activeTargets"]
        return {t["labels"]["job"]: t["health"] for t in active}

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@contextlib.contextmanager
def prometheus_server(
    workdir: Path, targets: Mapping[str, str], rule_file: Path, interval: str = "1s"
) -> Iterator[PrometheusServer]:
    """Prometheus scraping each ``job -> host:port`` target's /metrics and evaluating
    ``rule_file``, both every ``interval``."""
    if not Path(PROMETHEUS).is_file():
        pytest.skip(f"prometheus not found at {PROMETHEUS} (make system-deps installs it)")
    workdir.mkdir(parents=True, exist_ok=True)
    config = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(rule_file)],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [address]}]}
            for job, address in targets.items()
        ],
    }
    config_file = workdir / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config))
    port = free_port()
    log = workdir / "prometheus.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={config_file}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = PrometheusServer(f"http://127.0.0.1:{port}", log)
    try:
        _wait_ready(server, process)
        yield server
    finally:
        _stop(process)


def _wait_ready(server: PrometheusServer, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"prometheus exited ({process.returncode}):\n{server.log_tail()}")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"{server.url}/-/ready", timeout=2) as reply,
        ):
            if reply.status == 200:
                return
        time.sleep(0.1)
    raise AssertionError(f"prometheus not ready after 60 s:\n{server.log_tail()}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=15)
