"""Starts scoregate's real processes on loopback, for `up`, the demo, tests and benchmarks.

Each server is launched through its installed entry point (the same command the Helm chart runs)
with ``--ready-file``; a process counts as started once it has written that file, which it does
only when it is serving. Nothing here talks to a model or a database itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from runtimes.manifest import Manifest, load_manifests


class TopologyError(Exception):
    """A process did not start, or exited before it was ready."""


def free_port() -> int:
    """A port that was free a moment ago, for KServe, which cannot report a port-0 bind."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def entry_point(name: str) -> list[str]:
    """The installed console script, so processes start exactly as a container would."""
    script = Path(sys.executable).parent / name
    if script.exists():
        return [str(script)]
    module = {
        "scoregate-runtime": "runtimes.server",
        "scoregate-lineage": "governance.server",
        "scoregate-gateway": "gateway.server",
    }[name]
    return [sys.executable, "-m", module]


@dataclass
class ManagedProcess:
    """A started server: its ready-file content, log file and handle."""

    name: str
    popen: subprocess.Popen[bytes]
    info: dict[str, Any]
    log_path: Path

    @property
    def address(self) -> str:
        return str(self.info["grpc"])

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, wait for the graceful drain, SIGKILL if it does not come; returns exit code."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return int(self.popen.returncode)

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()


def start_process(
    name: str,
    argv: list[str],
    workdir: Path,
    timeout: float = 60.0,
    env: dict[str, str] | None = None,
) -> ManagedProcess:
    """Launches ``argv --ready-file ...`` and waits until the process has written its ready file."""
    workdir.mkdir(parents=True, exist_ok=True)
    ready = workdir / f"{name}.ready.json"
    ready.unlink(missing_ok=True)
    log_path = workdir / f"{name}.log"
    with log_path.open("ab") as log:
        popen = subprocess.Popen(
            [*argv, "--ready-file", str(ready)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
        )
    proc = ManagedProcess(name, popen, {}, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready.exists():
            proc.info = json.loads(ready.read_text())
            return proc
        if popen.poll() is not None:
            raise TopologyError(
                f"{name} exited with code {popen.returncode} before it was ready:\n"
                + proc.log_tail()
            )
        time.sleep(0.05)
    proc.kill()
    raise TopologyError(f"{name} was not ready within {timeout:.0f} s:\n{proc.log_tail()}")


def start_runtime(model_dir: Path, workdir: Path, name: str = "runtime") -> ManagedProcess:
    argv = [
        *entry_point("scoregate-runtime"),
        "--model-dir", str(model_dir),
        "--host", "127.0.0.1",
        "--grpc-port", str(free_port()),
        "--http-port", str(free_port()),
    ]  # fmt: skip
    return start_process(name, argv, workdir)


def start_lineage(
    db: Path | str,
    workdir: Path,
    name: str = "lineage",
    extra_args: list[str] | None = None,
    insecure: bool = True,
) -> ManagedProcess:
    """``db`` is a SQLite file path or a database URL (``postgresql://...``). ``insecure``:
    plaintext and open access (the demo's and most tests' loopback topology); without it
    ``extra_args`` carry the TLS and access settings (docs/lineage.md)."""
    db_url = db if isinstance(db, str) else f"sqlite:///{db}"
    argv = [
        *entry_point("scoregate-lineage"),
        "--db-url", db_url,
        "--host", "127.0.0.1",
        "--port", "0",
        *(["--plaintext", "true", "--open-access", "true"] if insecure else []),
        *(extra_args or []),
    ]  # fmt: skip
    return start_process(name, argv, workdir)


def start_gateway(
    routes: Path,
    model_dir: Path,
    workdir: Path,
    otlp_endpoint: str = "",
    name: str = "gateway",
    extra_args: list[str] | None = None,
    lineage_endpoint: str = "",
    outbox_dir: Path | None = None,
    insecure: bool = True,
) -> ManagedProcess:
    """With ``outbox_dir``, decisions go through the durable outbox to ``lineage_endpoint``.
    ``insecure``: plaintext and open access (the demo's and most tests' loopback topology);
    without it ``extra_args`` carry the TLS and access settings (docs/security.md)."""
    argv = [
        *entry_point("scoregate-gateway"),
        "--routes", str(routes),
        "--model-dir", str(model_dir),
        "--host", "127.0.0.1",
        "--port", "0",
        "--otlp-endpoint", otlp_endpoint,
        "--lineage-endpoint", lineage_endpoint,
        *(["--outbox-dir", str(outbox_dir)] if outbox_dir is not None else []),
        *(["--plaintext", "true", "--open-access", "true"] if insecure else []),
        *(extra_args or []),
    ]  # fmt: skip
    return start_process(name, argv, workdir)


CHURN_POLICY: dict[str, Any] = {
    "version": "churn-policy-1",
    "review_at": 0.35,
    "decline_at": 0.35,
    "decisions": {"approve": "none", "review": "watch", "decline": "retain-offer"},
}
"""Two bands: a retention offer for customers likely to leave, nothing for the others."""

TRADE_ANOMALY_POLICY: dict[str, Any] = {
    "version": "trade-anomaly-policy-1",
    "review_at": 0.6,
    "decline_at": 0.6,
    "decisions": {"approve": "pass", "review": "watch", "decline": "flag"},
}
"""Two bands: trades unusual enough for surveillance to review are flagged, the others pass
(``watch`` names the empty middle band: the gateway wants three distinct names)."""


def demo_routes(manifests: dict[tuple[str, str], Manifest], runtime_address: str) -> dict[str, Any]:
    """The local routing config: every model version on the one local runtime.

    card-fraud's champion is the lowest version and its challenger the highest, so pinned calls
    can reach both; credit-risk serves its only version.
    """
    models: dict[str, Any] = {}
    for name, version in sorted(manifests):
        entry = models.setdefault(name, {"versions": {}})
        entry["versions"][version] = {"endpoints": [runtime_address]}
    for entry in models.values():
        versions = sorted(entry["versions"], key=int)
        entry["aliases"] = {"champion": versions[0], "challenger": versions[-1]}
    points = {
        "card-fraud": {
            "primary": {"model": "card-fraud", "version": "champion"},
            "timeout_ms": 250,
            "policy": {"version": "card-fraud-policy-1", "review_at": 0.5, "decline_at": 0.85},
        },
        "credit-risk": {
            "primary": {"model": "credit-risk", "version": "champion"},
            "timeout_ms": 500,
            "policy": {"version": "credit-risk-policy-1", "review_at": 0.3, "decline_at": 0.6},
        },
        "churn": {
            "primary": {"model": "churn", "version": "champion"},
            "timeout_ms": 500,
            "policy": CHURN_POLICY,
        },
        "trade-anomaly": {
            "primary": {"model": "trade-anomaly", "version": "champion"},
            "timeout_ms": 250,
            "policy": TRADE_ANOMALY_POLICY,
        },
    }
    return {"models": models, "decision_points": {k: v for k, v in points.items() if k in models}}


@dataclass
class Topology:
    """A runtime, a lineage store and a gateway wired together on loopback."""

    workdir: Path
    model_dir: Path
    processes: list[ManagedProcess] = field(default_factory=list)
    routes: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    """Edits ``demo_routes`` before the gateway loads them (a canary, a fallback chain...): a
    function, since the runtime's address is known only once it has started."""
    metrics_refresh_s: float = 60.0
    """How often the lineage store recomputes the drift it exports on /metrics (its address is
    in ``lineage.info["metrics"]``)."""
    lineage_args: list[str] = field(default_factory=list)
    """More flags for the lineage store (e.g. ``--adverse-outcomes``)."""

    @property
    def runtime(self) -> ManagedProcess:
        return self._named("runtime")

    @property
    def lineage(self) -> ManagedProcess:
        return self._named("lineage")

    @property
    def gateway(self) -> ManagedProcess:
        return self._named("gateway")

    def _named(self, name: str) -> ManagedProcess:
        return next(p for p in self.processes if p.name == name)

    def start(self) -> Topology:
        try:
            manifests = load_manifests(self.model_dir)
            runtime = start_runtime(self.model_dir, self.workdir)
            self.processes.append(runtime)
            monitoring = [
                "--metrics-port", "0", "--metrics-refresh", str(self.metrics_refresh_s),
                # The risk page on loopback (its address in lineage.info["web"]), replaying
                # with the models the runtime serves.
                "--web-port", "0", "--web-model-dir", str(self.model_dir),
                *self.lineage_args,
            ]  # fmt: skip
            lineage = start_lineage(
                self.workdir / "lineage.db", self.workdir, extra_args=monitoring
            )
            self.processes.append(lineage)
            routes = self.workdir / "routes.yaml"
            config = demo_routes(manifests, runtime.address)
            if self.routes is not None:
                config = self.routes(config)
            routes.write_text(yaml.safe_dump(config))
            gateway = start_gateway(
                routes,
                self.model_dir,
                self.workdir,
                lineage_endpoint=lineage.address,
                outbox_dir=self.workdir / "outbox",
            )
            self.processes.append(gateway)
        except BaseException:
            self.stop()
            raise
        return self

    def addresses(self) -> dict[str, Any]:
        return {
            "gateway": self.gateway.address,
            "runtimes": [self.runtime.address],
            "lineage": self.lineage.address,
            "web": self.lineage.info.get("web", ""),
            "workdir": str(self.workdir),
        }

    def stop(self) -> dict[str, int]:
        """Stops in reverse order: the gateway drains into a lineage store still running."""
        codes: dict[str, int] = {}
        for proc in reversed(self.processes):
            with contextlib.suppress(Exception):
                codes[proc.name] = proc.stop()
        self.processes.clear()
        return codes
