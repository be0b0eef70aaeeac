"""``python -m loadtests.bench`` (``make bench``): start every server, measure every path, report.

Everything runs on 127.0.0.1 in one run so that ratios hold on a noisy machine: the in-process
onnxruntime floor first (nothing else running), then each network path in turn with its own
load-generator process while the other servers idle. Prints the table and the targets' verdicts,
writes ``bench.json`` and two PNG plots to ``--workdir``, and exits 1 when a measurable target is
missed (``--no-fail``: always 0).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

# Load-generator and loop bounds per run size: (warm-up calls, sequential calls, sequential s,
# saturation calls, saturation s, in-process floor calls, floor s).
SIZES: dict[str, tuple[int, int, float, int, float, int, float]] = {
    "full": (300, 3000, 6.0, 300_000, 10.0, 20_000, 4.0),
    "quick": (100, 800, 2.0, 100_000, 3.0, 5_000, 1.0),
    "tiny": (20, 100, 2.0, 200, 2.0, 200, 0.5),
}


SHED = "gateway-shedding"
REASONS_OFF = "gateway-reasons-off"
SECURED = "gateway-secured"
BENCH_CALLER = "bench-client"
"""The secured path's caller: its token's subject, which the bench's access policy allows."""


@dataclass(frozen=True)
class Job:
    key: str
    target: str
    method: str
    payloads: Path
    unique_field: int
    server_pids: list[int]
    rows_per_call: int = 1
    concurrency: int = 32
    overload_rate: float = 0.0
    client_args: tuple[str, ...] = ()
    """The load generator's TLS and token options (the secured path)."""


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: must be at least 1")
    return value


def _odd(text: str) -> int:
    value = int(text)
    if value < 1 or value % 2 == 0:
        raise argparse.ArgumentTypeError(f"{value}: the rounds' median needs an odd count >= 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m loadtests.bench", description=__doc__)
    parser.add_argument("--workdir", type=Path, default=Path(".scoregate/bench"))
    parser.add_argument("--model-dir", type=Path, default=None, help="default WORKDIR/models")
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--quick", action="store_const", const="quick", dest="size")
    parser.add_argument("--concurrency", type=int, default=32, help="calls in flight")
    parser.add_argument("--batch", type=int, default=100, help="rows per ScoreBatch call")
    parser.add_argument(
        "--rounds",
        type=_odd,
        default=None,
        help="times every path is measured, in turn, each with 1/rounds of the phase time; "
        "figures and ratios are the rounds' medians (default: 3, 1 for --size tiny)",
    )
    parser.add_argument(
        "--overload-generators",
        type=_positive,
        default=2,
        help="load-generator processes sharing the 2 x saturation open loop",
    )
    parser.add_argument("--no-fail", action="store_true", help="exit 0 even if targets miss")
    return parser


def per_round(size: tuple[Any, ...], rounds: int) -> tuple[Any, ...]:
    """A size whose measured phases (not the warm-up) are 1/rounds as long."""
    warmup, seq_calls, seq_s, sat_calls, sat_s, *floor = size
    return (
        warmup,
        max(1, seq_calls // rounds),
        seq_s / rounds,
        max(1, sat_calls // rounds),
        sat_s / rounds,
        *floor,
    )


def _loadgen_argv(job: Job, size: tuple[Any, ...], out: Path, label: str) -> list[str]:
    """``label`` prefixes the calls' request ids: each run of a path gets its own."""
    warmup, seq_calls, seq_s, sat_calls, sat_s, _, _ = size
    return [
        sys.executable, "-m", "loadtests.bench.loadgen",
        "--label", label,
        "--target", job.target,
        "--method", job.method,
        "--payloads", str(job.payloads),
        "--unique-field", str(job.unique_field),
        "--rows-per-call", str(job.rows_per_call),
        "--server-pids", ",".join(map(str, job.server_pids)),
        "--concurrency", str(job.concurrency),
        "--warmup-calls", str(warmup),
        "--sequential-calls", str(seq_calls),
        "--sequential-seconds", str(seq_s),
        "--saturation-calls", str(sat_calls),
        "--saturation-seconds", str(sat_s),
        "--overload-rate", str(job.overload_rate),
        "--overload-seconds", str(sat_s),
        "--out", str(out),
        *job.client_args,
    ]  # fmt: skip


def run_loadgen(
    job: Job, size: tuple[Any, ...], workdir: Path, round_no: int = 0
) -> dict[str, Any]:
    out = workdir / f"{job.key}.round{round_no}.result.json"
    argv = _loadgen_argv(job, size, out, f"{job.key}-r{round_no}" if round_no else job.key)
    subprocess.run(argv, check=True, timeout=120 + size[2] + size[4])
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def scrape(metrics_address: str) -> dict[str, float]:
    """A process's Prometheus samples by metric name, the label sets of each name summed."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://{metrics_address}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name] = samples.get(sample.name, 0.0) + sample.value
    return samples


def outbox_depth(metrics_address: str) -> float:
    """Records the gateway's outbox holds that the store has not acknowledged."""
    depth = scrape(metrics_address).get("scoregate_outbox_depth_records")
    if depth is None:
        raise RuntimeError(f"no scoregate_outbox_depth_records at {metrics_address}")
    return depth


def drain_lineage(
    metrics_address: str, server_pids: list[int], result: dict[str, Any], limit_s: float = 120.0
) -> None:
    """Waits until the lineage store has every record of the phase (the outbox of the gateway
    at ``metrics_address`` is empty), and counts the servers' CPU meanwhile as the phase's: a
    store that lags the gateway does its work after the window, and would otherwise have it
    counted in the next path's phase (or not at all)."""
    from loadtests.bench.loadgen import cpu_by_process

    started, before = time.monotonic(), cpu_by_process(server_pids)
    while outbox_depth(metrics_address) > 0:
        if time.monotonic() - started > limit_s:
            raise SystemExit(f"bench: the lineage store did not catch up within {limit_s:.0f} s")
        time.sleep(0.05)
    after = cpu_by_process(server_pids)
    sat = result["saturation"]
    sat["drain_s"] = time.monotonic() - started
    by_pid = sat["server_cpu_s_by_pid"]
    for pid in server_pids:
        by_pid[str(pid)] += after[pid] - before[pid]
    sat["server_cpu_s"] = sum(by_pid.values())
    if sat["rows"]:
        sat["server_cpu_us_per_row"] = sat["server_cpu_s"] * 1e6 / sat["rows"]


def split_cpu(result: dict[str, Any], names: Mapping[int, str]) -> None:
    """The saturation phase's CPU per decision by server process name (``cpu_split``; ``names``
    maps pids to names): where a path's decisions cost, e.g. what lineage adds to the gateway,
    the runtime and the store."""
    sat = result["saturation"]
    rows = sat["rows"]
    sat["cpu_split"] = {
        names[int(pid)]: seconds * 1e6 / rows if rows else 0.0
        for pid, seconds in sat["server_cpu_s_by_pid"].items()
    }


def run_overload(job: Job, size: tuple[Any, ...], workdir: Path, generators: int) -> dict[str, Any]:
    """The open loop split over ``generators`` load-generator processes, each offering its share
    of the rate at once, merged call by call: one Python loop sending and timing ~2,000 calls/s
    lags by milliseconds, and that lag would be counted in every refusal's latency."""
    share = replace(job, overload_rate=job.overload_rate / generators)
    outs = [workdir / f"{job.key}.gen{g}.result.json" for g in range(generators)]
    procs = []
    try:
        for g, out in enumerate(outs):
            argv = _loadgen_argv(share, size, out, f"{job.key}-g{g}")
            procs.append(subprocess.Popen(argv))
        for proc in procs:
            if proc.wait(timeout=120 + size[4]) != 0:
                raise subprocess.CalledProcessError(proc.returncode, proc.args)
    finally:
        for proc in procs:  # none is left running when one failed
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    from loadtests.bench.loadgen import Phase

    results = [json.loads(out.read_text()) for out in outs]
    merged = Phase.merged([r.pop("raw") for r in results])
    return {
        **results[0],
        "label": job.key,
        "rate": job.overload_rate,
        "generators": generators,
        "overload": merged.summary(job.rows_per_call),
    }


def smoke(
    runtime: str, gateways: list[str], infer: bytes, score: bytes, secured: tuple[str, ...] = ()
) -> None:
    """One typed call per path, so the bench fails loudly rather than measuring errors;
    ``secured`` is the secured gateway's address and the load generator's options for it."""
    import grpc

    from scoring.v1 import scoring_pb2

    with grpc.insecure_channel(runtime) as channel:
        channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")(infer, timeout=10)
    calls: list[tuple[str, grpc.Channel, tuple[tuple[str, str], ...]]] = [
        (address, grpc.insecure_channel(address), ()) for address in gateways
    ]
    if secured:
        address, _, ca, _, token = secured
        credentials = grpc.ssl_channel_credentials(Path(ca).read_bytes())
        bearer = (("authorization", f"Bearer {Path(token).read_text().strip()}"),)
        calls.append((address, grpc.secure_channel(address, credentials), bearer))
    for address, channel, metadata in calls:
        with channel:
            method = channel.unary_unary("/scoring.v1.ScoringService/Score")
            raw = method(score, timeout=10, metadata=metadata)
            response = scoring_pb2.ScoreResponse.FromString(raw)
            if not (response.decision and response.model_name):
                raise SystemExit(f"bench: gateway {address} answered without a decision")


@dataclass
class Servers:
    """Every server the bench measures, started once; ``pids`` by process name."""

    processes: list[Any]
    client_args: tuple[str, ...] = ()
    """The load generator's options for the secured gateway."""

    def process(self, name: str) -> Any:
        return next(p for p in self.processes if p.name == name)

    def address(self, name: str) -> str:
        return str(self.process(name).address)

    def pids(self, *names: str) -> list[int]:
        by_name = {p.name: p.popen.pid for p in self.processes}
        return [by_name[n] for n in names]

    def stop(self) -> None:
        for proc in reversed(self.processes):
            with contextlib.suppress(Exception):
                proc.stop()


def secured_path(folder: Path) -> tuple[tuple[str, ...], list[str]]:
    """Credentials made for this run (``loadtests.local.credentials``): the load generator's
    options (the CA, a bearer token) and the secured gateway's (its certificate, the issuer's
    JWKS, an access policy letting ``BENCH_CALLER`` score every decision point)."""
    import yaml

    from loadtests.local.credentials import AUDIENCE, ISSUER, CertificateAuthority, Issuer

    folder.mkdir(parents=True, exist_ok=True)
    authority = CertificateAuthority("scoregate bench CA")
    ca = authority.write(folder / "ca.crt")
    cert, key = authority.server().write(folder, "gateway")
    issuer = Issuer()
    kid = issuer.ec("bench-1")
    jwks = issuer.write_jwks(folder / "jwks.json")
    token = folder / "token"
    # Long enough for the slowest full run; each call still has it verified (from the cache).
    token.write_text(issuer.token(kid, BENCH_CALLER, lifetime_s=4 * 3600))
    policy = folder / "access-policy.yaml"
    grant = {"principals": [BENCH_CALLER], "decision_points": ["*"]}
    policy.write_text(yaml.safe_dump({"scoring": [grant]}))
    client = ("--tls-ca-file", str(ca), "--bearer-token-file", str(token))
    gateway = [
        "--tls-cert-file", str(cert), "--tls-key-file", str(key),
        "--jwt-jwks-file", str(jwks), "--jwt-issuer", ISSUER, "--jwt-audience", AUDIENCE,
        "--jwt-algorithms", "ES256", "--access-policy", str(policy),
    ]  # fmt: skip
    return client, gateway


def start_servers(model_dir: Path, workdir: Path, max_in_flight: int) -> Servers:
    import yaml

    from loadtests.local.routes import without_reasons
    from loadtests.local.topology import (
        demo_routes,
        free_port,
        start_gateway,
        start_lineage,
        start_process,
        start_runtime,
    )
    from runtimes.manifest import load_manifests

    servers = Servers([])
    python = [sys.executable, "-m"]
    try:
        servers.processes.append(
            start_process("echo", [*python, "loadtests.bench.echo", "--port", "0"], workdir)
        )
        runtime = start_runtime(model_dir, workdir)
        servers.processes.append(runtime)
        proxy = [*python, "loadtests.bench.proxy", "--upstream", runtime.address]
        servers.processes.append(start_process("proxy", proxy, workdir))
        (workdir / "lineage.db").unlink(missing_ok=True)
        lineage = start_lineage(workdir / "lineage.db", workdir)
        servers.processes.append(lineage)
        routes = workdir / "routes.yaml"
        routes.write_text(yaml.safe_dump(demo_routes(load_manifests(model_dir), runtime.address)))
        servers.processes.append(
            start_gateway(routes, model_dir, workdir, name="gateway-lineage-off")
        )

        def lineage_on(served: Path, name: str, security: list[str] | None = None) -> None:
            """A gateway on the production lineage path: records go through the durable outbox
            to the store (no OTLP span export to it, no general tracing); its outbox depth
            (metrics) tells the bench when the store has caught up. With ``security``, its TLS
            and access settings instead of plaintext and open access."""
            outbox = workdir / f"outbox-{name}"
            shutil.rmtree(outbox, ignore_errors=True)
            gateway = start_gateway(
                served, model_dir, workdir, name=name, lineage_endpoint=lineage.address,
                outbox_dir=outbox, insecure=security is None,
                extra_args=[*(security or []), "--metrics-port", str(free_port())],
            )  # fmt: skip
            servers.processes.append(gateway)

        lineage_on(routes, "gateway-lineage-on")
        # The same path with reasons off: the runtime is asked for no contributions.
        reasons_off = workdir / "routes-reasons-off.yaml"
        reasons_off.write_text(yaml.safe_dump(without_reasons(yaml.safe_load(routes.read_text()))))
        lineage_on(reasons_off, REASONS_OFF)
        # The same path secured: TLS, a bearer token checked per call, the access policy.
        servers.client_args, security = secured_path(workdir / "secured")
        lineage_on(routes, SECURED, security)
        # Sheds beyond the saturation concurrency; loaded at twice the saturation rate.
        shedding = ["--max-in-flight", str(max_in_flight)]
        servers.processes.append(
            start_gateway(routes, model_dir, workdir, name=SHED, extra_args=shedding)
        )
    except BaseException:
        servers.stop()
        raise
    return servers


def plan(servers: Servers, files: dict[str, Path], concurrency: int, batch: int) -> list[Job]:
    from loadtests.bench import payloads
    from loadtests.bench.echo import ECHO_METHOD

    infer, score = payloads.MODEL_INFER_METHOD, payloads.SCORE_METHOD
    infer_id, score_id = payloads.MODEL_INFER_ID_FIELD, payloads.SCORE_REQUEST_ID_FIELD
    on = "gateway-lineage-on"
    jobs = [
        Job("echo", servers.address("echo"), ECHO_METHOD, files["score"], 0, servers.pids("echo")),
        Job(
            "direct",
            servers.address("runtime"),
            infer,
            files["infer"],
            infer_id,
            servers.pids("runtime"),
        ),
        Job(
            "proxy",
            servers.address("proxy"),
            infer,
            files["infer"],
            infer_id,
            servers.pids("proxy", "runtime"),
        ),
        Job(
            "gateway-lineage-off",
            servers.address("gateway-lineage-off"),
            score,
            files["score"],
            score_id,
            servers.pids("gateway-lineage-off", "runtime"),
        ),
        Job(
            on,
            servers.address(on),
            score,
            files["score"],
            score_id,
            servers.pids(on, "runtime", "lineage"),
        ),
    ]
    jobs.append(
        Job(
            REASONS_OFF,
            servers.address(REASONS_OFF),
            score,
            files["score"],
            score_id,
            servers.pids(REASONS_OFF, "runtime", "lineage"),
        )
    )
    jobs.append(
        Job(
            SECURED,
            servers.address(SECURED),
            score,
            files["score"],
            score_id,
            servers.pids(SECURED, "runtime", "lineage"),
            client_args=servers.client_args,
        )
    )
    batch_method = payloads.score_batch_method()
    if batch_method is not None:
        jobs.append(
            Job(
                "score-batch",
                servers.address(on),
                batch_method,
                files["batch"],
                0,
                servers.pids(on, "runtime", "lineage"),
                rows_per_call=batch,
                # A batch call already fills the runtime; a few in flight saturate it.
                concurrency=max(1, concurrency // 8),
            )
        )
    return [replace(j, concurrency=concurrency) if j.rows_per_call == 1 else j for j in jobs]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from loadtests.bench import floor, payloads, report
    from loadtests.bench.loadgen import write_payloads
    from loadtests.local.demo import ensure_models

    size = SIZES[args.size]
    workdir: Path = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    model_dir: Path = (args.model_dir or workdir / "models").resolve()
    ensure_models(model_dir)
    started = time.monotonic()

    folder, manifest = payloads.card_fraud_manifest(model_dir)
    rows = payloads.sample_rows(1000)
    results: dict[str, dict[str, Any]] = {}
    print(f"bench ({args.size}): onnxruntime in process ...", flush=True)
    for result in floor.measure(folder / manifest.artifact, manifest, rows, size[5], size[6]):
        results[result["label"]] = result

    encoded = {
        "score": payloads.score_payloads(rows[:512]),
        "infer": payloads.model_infer_payloads(manifest, rows[:512]),
        "batch": payloads.score_batch_payloads(rows, args.batch, 16),
    }
    files = {name: workdir / f"{name}.payloads" for name in encoded}
    for name, data in encoded.items():
        write_payloads(files[name], data)

    rounds = args.rounds or (1 if args.size == "tiny" else 3)
    round_size = per_round(size, rounds)
    measured: list[dict[str, dict[str, Any]]] = [{} for _ in range(rounds)]
    servers = start_servers(model_dir, workdir, args.concurrency)
    try:
        gateways = [servers.address("gateway-lineage-off"), servers.address("gateway-lineage-on")]
        secured = (servers.address(SECURED), *servers.client_args)
        infer_one, score_one = encoded["infer"][0], encoded["score"][0]
        smoke(servers.address("runtime"), gateways, infer_one, score_one, secured)
        jobs = plan(servers, files, args.concurrency, args.batch)
        # Every path once per round, in turn: a machine that speeds up or slows down during the
        # run (as shared VMs do) shifts every path of a round alike, so ratios hold per round.
        for round_no in range(rounds):
            for job in jobs:
                print(
                    f"bench ({args.size}): round {round_no + 1}/{rounds}: {job.key} ...", flush=True
                )
                result = run_loadgen(job, round_size, workdir, round_no)
                if servers.pids("lineage")[0] in job.server_pids:
                    own = job.key in (REASONS_OFF, SECURED)
                    gateway = job.key if own else "gateway-lineage-on"
                    metrics = str(servers.process(gateway).info["metrics"])
                    drain_lineage(metrics, job.server_pids, result)
                split_cpu(result, {p.popen.pid: p.name for p in servers.processes})
                measured[round_no][job.key] = result
        saturated = statistics.median(
            m["gateway-lineage-off"]["saturation"]["calls_per_s"] for m in measured
        )
        print(f"bench ({args.size}): {SHED} at 2 x {saturated:,.0f} calls/s ...", flush=True)
        shed = Job(
            SHED,
            servers.address(SHED),
            payloads.SCORE_METHOD,
            files["score"],
            payloads.SCORE_REQUEST_ID_FIELD,
            servers.pids(SHED, "runtime"),
            overload_rate=2 * saturated,
        )
        overload = run_overload(shed, size, workdir, args.overload_generators)
    finally:
        servers.stop()

    notes = {"score-batch": "not available: scoring.v1 has no ScoreBatch RPC yet"}
    round_rows = [
        [
            report.row_from_result(p, {**results, **m}.get(p.key), notes.get(p.key, ""))
            for p in report.PATHS
        ]
        for m in measured
    ]
    table_rows = [report.median_row(list(same)) for same in zip(*round_rows, strict=True)]
    found = report.combine_rounds([report.targets(rows) for rows in round_rows])
    off = next(r for r in table_rows if r.key == "gateway-lineage-off")
    found = [t for t in found if t.name != report.SHEDDING]
    found.append(report.shedding(off if off.available else None, overload))
    print(f"\n{report.table(table_rows)}\n\n{report.verdicts(found)}")
    meta = {
        "size": args.size,
        "concurrency": args.concurrency,
        "rounds": rounds,
        "seconds": round(time.monotonic() - started, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    # The CDF pools every round's one-at-a-time calls.
    latencies: dict[str, list[float]] = {
        k: r.pop("sequential_latencies_us") for k, r in results.items()
    }
    for m in measured:
        for k, r in m.items():
            latencies.setdefault(k, []).extend(r.pop("sequential_latencies_us"))
    raw = [*results.values(), *(r for m in measured for r in m.values()), overload]
    report.write_json(workdir / "bench.json", table_rows, found, meta, raw)
    pngs = report.plot(workdir, table_rows, latencies)
    print(f"\nbench: wrote {workdir / 'bench.json'}, {', '.join(p.name for p in pngs)}")
    missed = [t for t in found if t.ok is False]
    return 0 if args.no_fail or not missed else 1
