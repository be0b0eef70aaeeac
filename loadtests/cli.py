"""``python -m loadtests run SCENARIO``: one headless Locust run with reports and thresholds.

Against a deployed gateway pass ``--host HOST:PORT``; with ``--local`` the command starts a
runtime, a lineage store and a gateway on 127.0.0.1 (as ``scoregate up`` does), runs the scenario
against them and stops them. The exit code is Locust's: non-zero when a threshold failed.

Reports go to ``--out``: ``SCENARIO_stats.csv`` (and the other Locust CSVs), ``SCENARIO.html`` and
``SCENARIO.summary.json`` (totals, arm shares, every verdict). Arguments after ``--`` go to Locust
unchanged.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
from pathlib import Path

from loadtests.credentials import Credentials
from loadtests.scenarios import SCENARIOS, locustfile

# Shapes decide users and duration themselves.
SHAPED = frozenset({"step_ramp", "spike"})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m loadtests", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run one scenario headless")
    run.add_argument("scenario", choices=SCENARIOS)
    target = run.add_mutually_exclusive_group(required=True)
    target.add_argument("--host", help="gateway address host:port (a cluster's, or any)")
    target.add_argument(
        "--local", action="store_true", help="start a local topology on 127.0.0.1 and use it"
    )
    run.add_argument("--workdir", type=Path, default=Path(".scoregate/loadtest"))
    run.add_argument(
        "--model-dir", type=Path, default=None, help="with --local (default WORKDIR/models)"
    )
    run.add_argument("--out", type=Path, default=None, help="reports (default WORKDIR/reports)")
    run.add_argument("-u", "--users", type=int, default=8)
    run.add_argument("-r", "--spawn-rate", type=float, default=8.0)
    run.add_argument("-t", "--run-time", default="20s", help="e.g. 20s, 5m (not for shapes)")
    run.add_argument("--decision-point", default="card-fraud")
    run.add_argument(
        "--warmup",
        type=int,
        default=50,
        help="calls made (and not counted) before the run: first calls open channels and "
        "warm the runtime's model",
    )
    run.add_argument("--tls-ca-file", help="the gateway's CA bundle: call it over TLS")
    run.add_argument("--tls-cert-file", help="client certificate, for a mutual-TLS gateway")
    run.add_argument("--tls-key-file", help="the client certificate's key")
    run.add_argument("--bearer-token-file", help="a file holding the bearer token (JWT) to send")
    run.add_argument("--p99-ms", type=float, default=None, help="p99 limit, ms")
    run.add_argument("--max-fail-ratio", type=float, default=0.0, help="failed share limit")
    run.add_argument("--canary-weight", type=float, default=None, help="canary: expected weight")
    run.add_argument("--fault-at", type=float, default=5.0, help="fallback: seconds to fault")
    run.add_argument(
        "--fault-command",
        default="",
        help="fallback: command stopping the runtime (with --local: SIGKILL to the local one)",
    )
    return parser


def locust_argv(
    args: argparse.Namespace, host: str, out: Path, extra: list[str] | None = None
) -> list[str]:
    scenario: str = args.scenario
    argv = [
        sys.executable, "-m", "locust",
        "-f", str(locustfile(scenario)),
        "--headless",
        "--host", host,
        "--csv", str(out / scenario),
        "--html", str(out / f"{scenario}.html"),
        "--summary-json", str(out / f"{scenario}.summary.json"),
        "--decision-point", args.decision_point,
        "--max-fail-ratio", str(args.max_fail_ratio),
        "--only-summary",
    ]  # fmt: skip
    if scenario not in SHAPED:
        argv += ["-u", str(args.users), "-r", str(args.spawn_rate), "-t", args.run_time]
    if args.p99_ms is not None:
        argv += ["--p99-ms", str(args.p99_ms)]
    if args.canary_weight is not None:
        argv += ["--canary-weight", str(args.canary_weight)]
    if args.fault_command:
        argv += ["--fault-at", str(args.fault_at), "--fault-command", args.fault_command]
    argv += Credentials.of(args).argv()
    return argv + list(extra or [])


def warm_up(
    host: str, decision_point: str, calls: int, credentials: Credentials | None = None
) -> None:
    """Sequential Score calls whose outcome does not matter, so the run measures a warm path."""
    if calls <= 0:
        return
    import grpc

    from runtimes.training.datasets import sample_requests
    from scoring.v1 import scoring_pb2_grpc
    from scoring.v1.requests import score_request

    rows = sample_requests(decision_point, min(calls, 64), seed=11)
    credentials = credentials or Credentials()
    metadata = credentials.metadata() or None
    with credentials.channel(host) as channel:
        stub = scoring_pb2_grpc.ScoringServiceStub(channel)
        for i in range(calls):
            features = rows[i % len(rows)]
            request = score_request(f"warmup-{i}", decision_point, f"warmup-{i}", features)
            with contextlib.suppress(grpc.RpcError):
                stub.Score(request, timeout=5.0, metadata=metadata)


def run_locust(args: argparse.Namespace, host: str, out: Path, extra: list[str]) -> int:
    out.mkdir(parents=True, exist_ok=True)
    warm_up(host, args.decision_point, args.warmup, Credentials.of(args))
    argv = locust_argv(args, host, out, extra)
    print(f"loadtest: {args.scenario} against {host}; reports in {out}", flush=True)
    return subprocess.run(argv, check=False).returncode


def run_local(args: argparse.Namespace, out: Path, extra: list[str]) -> int:
    from loadtests.local.demo import ensure_models
    from loadtests.local.routes import for_scenario
    from loadtests.local.topology import Topology

    workdir: Path = args.workdir.resolve()
    model_dir: Path = (args.model_dir or workdir / "models").resolve()
    ensure_models(model_dir)
    routes = for_scenario(args.scenario, args.canary_weight)
    topology = Topology(workdir / "topology", model_dir, routes=routes).start()
    try:
        if args.scenario == "fallback" and not args.fault_command:
            args.fault_command = f"kill -KILL {topology.runtime.popen.pid}"
        return run_locust(args, topology.gateway.address, out, extra)
    finally:
        topology.stop()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    args = build_parser().parse_args(argv)
    out: Path = (args.out or args.workdir / "reports").resolve()
    if args.local:
        return run_local(args, out, extra)
    return run_locust(args, args.host, out, extra)
