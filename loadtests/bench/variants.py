"""``python -m loadtests.bench.variants``: gateway variants side by side, where the CPU goes.

``make bench`` measures each path once per round, minutes apart; a change to the gateway's hot
path is better judged against its alternative seconds apart, and by where each decision's CPU
goes. This starts one runtime, one lineage store and one gateway per ``--variant``, then in each
round loads every variant in turn (the order reversed every other round, so neither side always
follows the other) at saturation and prints, per phase:

- decisions (rows) per second, and the calls' p50 and p99 under that load;
- CPU µs per decision of the gateway (with its children: the outbox's sync helper), the
  runtime and the lineage store, all counted until the gateway's outbox has drained (as the
  bench counts them);
- the gateway's main thread's share, over the load window: the event loop, where all of its
  Python runs (gRPC's poller and event-engine threads and the sync helper are the rest);
- the rows each micro-batched runtime call carried on average (Score; the gateway's
  ``scoregate_gateway_runtime_call_rows``), which sets the runtime's CPU per decision;
- the load generator's cores and the share of the machine that idled.

A variant is ``name:mode[:gateway args]``: mode ``off`` (no lineage), ``outbox`` (the durable
outbox without delivery) or ``on`` (outbox delivering to the store); ``--env name:KEY=VALUE``
sets an environment variable for one variant's gateway (``PYTHONPATH=<worktree>`` runs another
checkout's gateway). The last lines give each variant's rate per round as a ratio to the first
variant's, and the median. ``--control`` adds a second gateway identical to the first
(``<name>-again``): on a shared VM two identical gateways differ noticeably within a round
(docs/performance-log.md), so a difference is real only where it clearly exceeds the control's,
which the last line prints. ``--out`` saves everything as JSON. Figures from it are in
docs/performance-log.md; it sets no target and never fails on a figure.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MODES = ("off", "outbox", "on")


@dataclass
class Variant:
    name: str
    mode: str
    args: list[str]
    env: dict[str, str] = field(default_factory=dict)
    reasons: bool = True
    """Whether its routes give reasons (``--reasons-off`` turns them off)."""


def parse_variant(text: str) -> Variant:
    name, _, rest = text.partition(":")
    mode, _, args = rest.partition(":")
    if not name or mode not in MODES:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected name:mode[:gateway args] with mode one of {', '.join(MODES)}"
        )
    return Variant(name, mode, shlex.split(args))


def control_of(base: Variant) -> Variant:
    """A second gateway identical to ``base``: its rate against the base's is the noise floor."""
    return Variant(f"{base.name}-again", base.mode, list(base.args), dict(base.env), base.reasons)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.bench.variants",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument(
        "--variant",
        type=parse_variant,
        action="append",
        required=True,
        help="name:mode[:gateway args]; mode off, outbox or on (repeat; the first is the base)",
    )
    parser.add_argument("--env", action="append", default=[], help="name:KEY=VALUE")
    parser.add_argument(
        "--reasons-off",
        action="append",
        default=[],
        metavar="NAME",
        help="the variant's routes ask for no reasons (max_reasons 0 everywhere)",
    )
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=5.0, help="saturation phase length")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--score-batch", action="store_true", help="ScoreBatch, 100 rows a call, 4 in flight"
    )
    parser.add_argument("--workdir", type=Path, default=Path(".scoregate/variants"))
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    parser.add_argument(
        "--control",
        action="store_true",
        help="add a copy of the first variant, to show the difference noise alone makes",
    )
    return parser


def apply_env(variants: list[Variant], assignments: list[str]) -> None:
    by_name = {v.name: v for v in variants}
    for text in assignments:
        name, _, assignment = text.partition(":")
        key, equals, value = assignment.partition("=")
        if name not in by_name or not key or not equals:
            raise SystemExit(f"variants: --env {text!r}: expected a variant's name:KEY=VALUE")
        by_name[name].env[key] = value


@dataclass
class Phase:
    round_no: int
    variant: str
    rate: float
    p50_ms: float
    p99_ms: float
    cpu_us: dict[str, float]
    # The gateway's main thread alone (its event loop), over the load window only.
    gateway_main_us: float
    client_cores: float
    machine_idle: float
    # Mean rows per micro-batched runtime call in the window (0: none counted, as with ScoreBatch).
    rows_per_call: float = 0.0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    variants: list[Variant] = args.variant
    control = control_of(variants[0]) if args.control else None
    if control is not None:
        variants.insert(1, control)
    if len({v.name for v in variants}) != len(variants):
        raise SystemExit("variants: each --variant needs its own name")
    apply_env(variants, args.env)
    for name in args.reasons_off:
        matching = [v for v in variants if v.name == name]
        if not matching:
            raise SystemExit(f"variants: --reasons-off {name!r}: no such variant")
        matching[0].reasons = False
    from loadtests.local.demo import ensure_models

    workdir: Path = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    model_dir: Path = (args.model_dir or workdir / "models").resolve()
    ensure_models(model_dir)
    load = _load_arguments(args, workdir)
    servers = _Servers(workdir)
    phases: list[Phase] = []
    try:
        servers.start(model_dir, variants)
        for round_no in range(args.rounds):
            for v in variants if round_no % 2 == 0 else variants[::-1]:
                phase = _measure(servers, v, round_no, load, args.seconds)
                phases.append(phase)
                print(_describe(phase), flush=True)
    finally:
        servers.stop()
    print()
    print(_ratios(variants, phases, control.name if control is not None else None))
    if args.out is not None:
        args.out.write_text(
            json.dumps(
                {
                    "variants": [v.__dict__ for v in variants],
                    "score_batch": args.score_batch,
                    "seconds": args.seconds,
                    "phases": [p.__dict__ for p in phases],
                },
                indent=1,
            )
        )
    return 0


def _load_arguments(args: argparse.Namespace, workdir: Path) -> list[str]:
    """The load generator's method, payloads (written to ``workdir``) and concurrency."""
    from loadtests.bench import payloads
    from loadtests.bench.loadgen import write_payloads

    rows = payloads.sample_rows(2048)
    payload_file = workdir / "variants.payloads"
    if args.score_batch:
        method = payloads.score_batch_method()
        if method is None:
            raise SystemExit("variants: scoring.v1 has no ScoreBatch RPC")
        write_payloads(payload_file, payloads.score_batch_payloads(rows, 100, 16))
        concurrency = max(1, args.concurrency // 8)
        load = ["--rows-per-call", "100", "--warmup-calls", "30"]
    else:
        method = payloads.SCORE_METHOD
        write_payloads(payload_file, payloads.score_payloads(rows[:512]))
        concurrency = args.concurrency
        load = ["--unique-field", str(payloads.SCORE_REQUEST_ID_FIELD), "--warmup-calls", "300"]
    return [
        "--method", method, "--payloads", str(payload_file),
        "--concurrency", str(concurrency), *load,
    ]  # fmt: skip


class _Servers:
    """The runtime, the store and a gateway per variant; ``stop`` also removes the store's
    database and the outboxes."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.processes: list[Any] = []
        self.gateways: dict[str, Any] = {}
        self._scratch: list[Path] = []

    def start(self, model_dir: Path, variants: list[Variant]) -> None:
        from loadtests.local.topology import free_port, start_gateway, start_lineage, start_runtime

        workdir = self.workdir
        self.runtime = start_runtime(model_dir, workdir)
        self.processes.append(self.runtime)
        routes = _write_routes(workdir, model_dir, self.runtime.address)
        no_reasons = _write_routes(workdir, model_dir, self.runtime.address, reasons=False)
        database = workdir / f"variants-{os.getpid()}.db"
        self._scratch += [database.with_name(database.name + end) for end in ("", "-wal", "-shm")]
        self.store = start_lineage(database, workdir)
        self.processes.append(self.store)
        for v in variants:
            outbox = None
            # Every gateway serves metrics: rows per runtime call, and the outbox's depth.
            extra = [*v.args, "--metrics-port", str(free_port())]
            if v.mode != "off":
                outbox = workdir / f"outbox-{v.name}-{os.getpid()}"
                self._scratch.append(outbox)
            served = routes if v.reasons else no_reasons
            with _environment(v.env):
                gateway = start_gateway(
                    served, model_dir, workdir, name=f"gateway-{v.name}", extra_args=extra,
                    lineage_endpoint=self.store.address if v.mode == "on" else "",
                    outbox_dir=outbox,
                )  # fmt: skip
            self.processes.append(gateway)
            self.gateways[v.name] = gateway

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        for path in self._scratch:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def _measure(
    servers: _Servers, v: Variant, round_no: int, load: list[str], seconds: float
) -> Phase:
    """One saturation phase of ``v``'s gateway, the store's catch-up counted in its CPU (as the
    bench counts it: ``cli.drain_lineage``)."""
    from loadtests.bench.cli import drain_lineage, scrape, split_cpu

    gateway = servers.gateways[v.name]
    metrics = str(gateway.info["metrics"])
    before = scrape(metrics)
    pids = {
        "gateway": gateway.popen.pid,
        "runtime": servers.runtime.popen.pid,
        "store": servers.store.popen.pid,
    }
    out = servers.workdir / f"variant-{v.name}.json"
    subprocess.run(
        [
            sys.executable, "-m", "loadtests.bench.loadgen",
            "--label", f"{v.name}-r{round_no}-{time.time_ns()}",
            "--target", gateway.address, *load,
            "--server-pids", ",".join(str(p) for p in pids.values()),
            "--sequential-calls", "1", "--sequential-seconds", "0.01",
            "--saturation-calls", "10000000", "--saturation-seconds", str(seconds),
            "--out", str(out),
        ],
        check=True,
        timeout=120 + seconds,
    )  # fmt: skip
    result = json.loads(out.read_text())
    after = scrape(metrics)
    if v.mode == "on":
        drain_lineage(metrics, list(pids.values()), result)
    split_cpu(result, {pid: name for name, pid in pids.items()})
    sat = result["saturation"]
    main_s = sat["server_main_thread_s_by_pid"][str(pids["gateway"])]
    return Phase(
        round_no,
        v.name,
        sat["rows_per_s"],
        sat["p50_us"] / 1000,
        sat["p99_us"] / 1000,
        sat["cpu_split"],
        main_s * 1e6 / sat["rows"] if sat["rows"] else 0.0,
        sat["client_cores"],
        sat["machine_idle"],
        _rows_per_call(before, after),
    )


def _rows_per_call(before: dict[str, float], after: dict[str, float]) -> float:
    """Mean rows per micro-batched runtime call between two scrapes of a gateway's metrics."""
    name = "scoregate_gateway_runtime_call_rows"
    calls = after.get(f"{name}_count", 0.0) - before.get(f"{name}_count", 0.0)
    rows = after.get(f"{name}_sum", 0.0) - before.get(f"{name}_sum", 0.0)
    return rows / calls if calls > 0 else 0.0


def _write_routes(
    workdir: Path, model_dir: Path, runtime_address: str, reasons: bool = True
) -> Path:
    import yaml

    from loadtests.local.routes import without_reasons
    from loadtests.local.topology import demo_routes
    from runtimes.manifest import load_manifests

    config = demo_routes(load_manifests(model_dir), runtime_address)
    routes = workdir / ("variants-routes.yaml" if reasons else "variants-routes-no-reasons.yaml")
    routes.write_text(yaml.safe_dump(config if reasons else without_reasons(config)))
    return routes


@contextlib.contextmanager
def _environment(env: dict[str, str]) -> Iterator[None]:
    """Sets variables for the processes started inside the block (they inherit os.environ)."""
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _describe(p: Phase) -> str:
    cpu = "  ".join(f"{k} {v:6.1f}" for k, v in p.cpu_us.items())
    return (
        f"round {p.round_no + 1}  {p.variant:<14} {p.rate:9,.0f}/s  p50 {p.p50_ms:5.1f} ms  "
        f"p99 {p.p99_ms:5.1f} ms  CPU us/decision: {cpu} (gateway main thread "
        f"{p.gateway_main_us:.1f})  rows/call {_one_decimal(p.rows_per_call)}  "
        f"client {p.client_cores:.2f} cores  machine idle {p.machine_idle:.1%}"
    )


def _one_decimal(value: float) -> str:
    """``value`` to one decimal, or a dash where nothing was counted."""
    return f"{value:.1f}" if value else "-"


def _ratios(variants: list[Variant], phases: list[Phase], control: str | None = None) -> str:
    """Each variant's rate per round against the first's, and the median; with ``control``
    (the first's identical copy), how far that copy strayed: the noise floor."""
    rates: dict[str, list[float]] = {v.name: [] for v in variants}
    for p in sorted(phases, key=lambda p: p.round_no):
        rates[p.variant].append(p.rate)
    base = rates[variants[0].name]
    lines = [f"rate / {variants[0].name}'s, per round, and the median:"]
    spread = 0.0
    for v in variants:
        ratios = [r / b for r, b in zip(rates[v.name], base, strict=True) if b > 0]
        median = statistics.median(ratios) if ratios else float("nan")
        lines.append(f"  {v.name:<14} {' '.join(f'{r:.2f}' for r in ratios)}  median {median:.2f}")
        if v.name == control:
            spread = max((abs(r - 1) for r in ratios), default=0.0)
    if control is not None:
        lines.append(
            f"noise floor: {control} (identical to {variants[0].name}) differed by up to "
            f"{spread:.0%} in a round"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
