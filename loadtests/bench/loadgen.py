"""The bench's load generator: one process, one ``grpc.aio`` channel, pre-encoded requests.

Phase 1 sends calls one at a time (latency without queueing); phase 2 keeps ``--concurrency``
calls in flight (throughput at saturation, with its latency) while reading the server processes'
CPU time before and after. With ``--overload-rate`` the run is instead an open loop at that
rate (calls started on schedule whatever the answers), to see how a server sheds overload.
Every phase is bounded in calls or seconds, and only loopback addresses are accepted. The result
is one JSON object on ``--out``.

Requests are length-prefixed byte strings in ``--payloads``, sent in turn to ``--method`` with
no protobuf work here. ``--unique-field N`` appends string field N with a fresh value to every
request: a later occurrence of a scalar field wins in protobuf, so every call carries its own
request id without re-encoding.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import ipaddress
import itertools
import json
import struct
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import psutil

from gateway.wire import varint

_LENGTH = struct.Struct(">I")


def write_payloads(path: Path, payloads: list[bytes]) -> None:
    path.write_bytes(b"".join(_LENGTH.pack(len(p)) + p for p in payloads))


def read_payloads(path: Path) -> list[bytes]:
    data = path.read_bytes()
    payloads, at = [], 0
    while at < len(data):
        (size,) = _LENGTH.unpack_from(data, at)
        payloads.append(data[at + 4 : at + 4 + size])
        at += 4 + size
    return payloads


def requests(payloads: list[bytes], unique_field: int, prefix: str) -> Iterator[bytes]:
    """Payloads in turn, each with string field ``unique_field`` set afresh (0: as they are)."""
    cycle = itertools.cycle(payloads)
    if not unique_field:
        yield from cycle
        return
    tag = varint(unique_field << 3 | 2)
    for i, payload in enumerate(cycle):
        value = f"{prefix}-{i:09d}".encode()
        yield payload + tag + varint(len(value)) + value


def require_loopback(target: str) -> None:
    host = target.rsplit(":", 1)[0].strip("[]")
    if host == "localhost" or ipaddress.ip_address(host).is_loopback:
        return
    raise SystemExit(f"loadgen: refusing {target}: the bench only loads loopback addresses")


def cpu_by_process(pids: list[int]) -> dict[int, float]:
    """User + system CPU seconds of each process with its children (the gateway's outbox sync
    helper does its fdatasyncs in a child process: ~25-40 us per decision, measured)."""
    seconds: dict[int, float] = {}
    for pid in pids:
        process = psutil.Process(pid)
        seconds[pid] = 0.0
        for member in (process, *process.children(recursive=True)):
            with contextlib.suppress(psutil.NoSuchProcess):  # a child that has just exited
                times = member.cpu_times()
                seconds[pid] += times.user + times.system
    return seconds


def main_thread_cpu(pids: list[int]) -> dict[int, float]:
    """User + system CPU seconds of each process's main thread alone. A grpc.aio server's
    Python (its event loop) runs there and nowhere else: at saturation the lineage-on gateway's
    main thread is the part that grows, not its sync helper (docs/performance-log.md)."""
    seconds: dict[int, float] = {}
    for pid in pids:
        for thread in psutil.Process(pid).threads():
            if thread.id == pid:
                seconds[pid] = thread.user_time + thread.system_time
    return seconds


def machine_idle() -> tuple[float, float]:
    """(idle + iowait, all) CPU seconds of the whole machine so far, over every core."""
    times = psutil.cpu_times()
    return times.idle + getattr(times, "iowait", 0.0), sum(times)


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


class Phase:
    """Latencies (µs) of the calls that answered, and the status codes of those that did not."""

    def __init__(self) -> None:
        self.latencies_us: list[float] = []
        self.errors: Counter[str] = Counter()
        self.error_latencies_us: list[float] = []
        self.error_latencies_by_code: dict[str, list[float]] = {}
        self.seconds = 0.0
        self.cpu_s = 0.0
        # Each server process's share of ``cpu_s`` (pid -> CPU seconds, children included).
        self.cpu_by_pid: dict[int, float] = {}
        # Each server process's main thread's CPU seconds (the event loop's, for grpc.aio).
        self.main_thread_by_pid: dict[int, float] = {}
        # The share of the machine's CPU time (all cores) that was idle during the phase.
        self.machine_idle = 0.0
        # The load generator's own CPU over the phase: near 1.0 core, its loop (not the server)
        # may be what limits the phase and inflates the latencies it measures.
        self.client_cpu_s = 0.0
        # How late a 1 ms timer fired on the load generator's loop during the phase: part of
        # every latency it measured (an answer waits for the loop as the timer does).
        self.loop_lag_us: list[float] = []

    def refused(self, code: str, latency_us: float) -> None:
        self.errors[code] += 1
        self.error_latencies_us.append(latency_us)
        self.error_latencies_by_code.setdefault(code, []).append(latency_us)

    def raw(self) -> dict[str, Any]:
        return {
            "latencies_us": self.latencies_us,
            "error_latencies_us": self.error_latencies_by_code,
            "loop_lag_us": self.loop_lag_us,
            "seconds": self.seconds,
            "client_cpu_s": self.client_cpu_s,
        }

    @classmethod
    def merged(cls, raws: list[dict[str, Any]]) -> Phase:
        """One phase from several generators' concurrent runs of it (``raw`` of each)."""
        phase = cls()
        for raw in raws:
            phase.latencies_us += raw["latencies_us"]
            for code, values in raw["error_latencies_us"].items():
                for value in values:
                    phase.refused(code, value)
            phase.loop_lag_us += raw["loop_lag_us"]
            phase.seconds = max(phase.seconds, raw["seconds"])
            phase.client_cpu_s += raw["client_cpu_s"]
        return phase

    def summary(self, rows_per_call: int) -> dict[str, Any]:
        lat = sorted(self.latencies_us)
        calls = len(lat)
        err = sorted(self.error_latencies_us)
        return {
            "calls": calls,
            "rows": calls * rows_per_call,
            "errors": dict(self.errors),
            "seconds": self.seconds,
            "calls_per_s": calls / self.seconds if self.seconds else 0.0,
            "rows_per_s": calls * rows_per_call / self.seconds if self.seconds else 0.0,
            "p50_us": percentile(lat, 0.50),
            "p90_us": percentile(lat, 0.90),
            "p99_us": percentile(lat, 0.99),
            "error_p99_us": percentile(err, 0.99),
            "error_p99_us_by_code": {
                code: percentile(sorted(values), 0.99)
                for code, values in sorted(self.error_latencies_by_code.items())
            },
            "server_cpu_s": self.cpu_s,
            "server_cpu_s_by_pid": {str(pid): cpu for pid, cpu in self.cpu_by_pid.items()},
            "server_main_thread_s_by_pid": {
                str(pid): cpu for pid, cpu in self.main_thread_by_pid.items()
            },
            "machine_idle": self.machine_idle,
            "server_cpu_us_per_row": self.cpu_s * 1e6 / (calls * rows_per_call) if calls else None,
            "client_cores": self.client_cpu_s / self.seconds if self.seconds else 0.0,
            "client_loop_lag_p99_us": percentile(sorted(self.loop_lag_us), 0.99),
        }


async def run_phase(
    call: Any,
    source: Iterator[bytes],
    concurrency: int,
    max_calls: int,
    max_seconds: float,
    call_timeout: float,
) -> Phase:
    phase = Phase()
    budget = iter(range(max_calls))
    deadline = time.perf_counter() + max_seconds

    async def worker() -> None:
        clock = time.perf_counter
        while next(budget, None) is not None and clock() < deadline:
            request = next(source)
            start = clock()
            try:
                await call(request, timeout=call_timeout)
            except grpc.aio.AioRpcError as e:
                phase.refused(e.code().name, (clock() - start) * 1e6)
                continue
            phase.latencies_us.append((clock() - start) * 1e6)

    start, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    phase.seconds = time.perf_counter() - start
    phase.client_cpu_s = time.process_time() - cpu
    return phase


async def run_open_loop(
    call: Any, source: Iterator[bytes], rate: float, max_seconds: float, call_timeout: float
) -> Phase:
    """Calls started at ``rate`` per second whatever the answers (an open loop, as when many
    independent callers arrive), so an overloaded server faces the full offered load."""
    phase = Phase()
    clock = time.perf_counter
    pending: set[asyncio.Task[None]] = set()

    async def one(request: bytes) -> None:
        start = clock()
        try:
            await call(request, timeout=call_timeout)
        except grpc.aio.AioRpcError as e:
            phase.refused(e.code().name, (clock() - start) * 1e6)
            return
        phase.latencies_us.append((clock() - start) * 1e6)

    start, cpu = clock(), time.process_time()
    sent = 0

    async def watch_lag() -> None:
        while True:
            before = clock()
            await asyncio.sleep(0.001)
            phase.loop_lag_us.append(max(0.0, (clock() - before - 0.001) * 1e6))

    watcher = asyncio.create_task(watch_lag())
    while (now := clock()) < start + max_seconds:
        # Every call due by now (timers are ~1 ms coarse: calls leave in small bursts).
        due = int((now - start) * rate) + 1
        for _ in range(due - sent):
            task = asyncio.create_task(one(next(source)))
            pending.add(task)
            task.add_done_callback(pending.discard)
        sent = due
        await asyncio.sleep(max(0.0, start + due / rate - clock()))
    if pending:
        await asyncio.wait(pending)
    watcher.cancel()
    phase.seconds = clock() - start
    phase.client_cpu_s = time.process_time() - cpu
    return phase


def open_channel(target: str, ca_file: Path | None) -> grpc.aio.Channel:
    """A channel with gRPC's default options: TLS against ``ca_file``'s CA when given."""
    if ca_file is None:
        return grpc.aio.insecure_channel(target)
    credentials = grpc.ssl_channel_credentials(root_certificates=ca_file.read_bytes())
    return grpc.aio.secure_channel(target, credentials)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    payloads = read_payloads(args.payloads)
    source = requests(payloads, args.unique_field, f"bench-{args.label}")
    pids = [int(p) for p in args.server_pids.split(",") if p]
    async with open_channel(args.target, args.tls_ca_file) as channel:
        call = channel.unary_unary(args.method)
        if args.bearer_token_file is not None:
            # Every call carries the token, as a secured caller's do.
            token = args.bearer_token_file.read_text().strip()
            call = functools.partial(call, metadata=(("authorization", f"Bearer {token}"),))
        await asyncio.wait_for(channel.channel_ready(), 10.0)
        await run_phase(
            call, source, args.concurrency, args.warmup_calls, args.warmup_seconds, args.timeout
        )
        if args.overload_rate > 0:
            overload = await run_open_loop(
                call, source, args.overload_rate, args.overload_seconds, args.timeout
            )
            return {
                "label": args.label,
                "target": args.target,
                "method": args.method,
                "rows_per_call": args.rows_per_call,
                "rate": args.overload_rate,
                "overload": overload.summary(args.rows_per_call),
                # Every call's latency, so that several generators' runs merge exactly.
                "raw": overload.raw(),
            }
        sequential = await run_phase(
            call, source, 1, args.sequential_calls, args.sequential_seconds, args.timeout
        )
        cpu_before, idle_before = cpu_by_process(pids), machine_idle()
        main_before = main_thread_cpu(pids)
        saturated = await run_phase(
            call,
            source,
            args.concurrency,
            args.saturation_calls,
            args.saturation_seconds,
            args.timeout,
        )
        cpu_after, idle_after = cpu_by_process(pids), machine_idle()
        main_after = main_thread_cpu(pids)
        saturated.cpu_by_pid = {pid: cpu_after[pid] - cpu_before[pid] for pid in pids}
        saturated.main_thread_by_pid = {pid: main_after[pid] - main_before[pid] for pid in pids}
        saturated.cpu_s = sum(saturated.cpu_by_pid.values())
        total = idle_after[1] - idle_before[1]
        saturated.machine_idle = (idle_after[0] - idle_before[0]) / total if total > 0 else 0.0
    return {
        "label": args.label,
        "target": args.target,
        "method": args.method,
        "rows_per_call": args.rows_per_call,
        "concurrency": args.concurrency,
        "sequential": sequential.summary(args.rows_per_call),
        "saturation": saturated.summary(args.rows_per_call),
        # Kept for the latency CDF plot.
        "sequential_latencies_us": sequential.latencies_us,
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m loadtests.bench.loadgen", description=__doc__)
    parser.add_argument("--label", required=True)
    parser.add_argument("--target", required=True, help="loopback host:port")
    parser.add_argument("--method", required=True, help="/package.Service/Method")
    parser.add_argument("--payloads", type=Path, required=True)
    parser.add_argument("--unique-field", type=int, default=0)
    parser.add_argument("--rows-per-call", type=int, default=1)
    parser.add_argument("--server-pids", default="", help="comma-separated")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--warmup-calls", type=int, default=200)
    parser.add_argument("--warmup-seconds", type=float, default=1.0)
    parser.add_argument("--sequential-calls", type=int, default=2000)
    parser.add_argument("--sequential-seconds", type=float, default=5.0)
    parser.add_argument("--saturation-calls", type=int, default=200_000)
    parser.add_argument("--saturation-seconds", type=float, default=8.0)
    parser.add_argument(
        "--overload-rate",
        type=float,
        default=0.0,
        help="calls/s offered in an open loop after the warm-up, instead of phases 1 and 2",
    )
    parser.add_argument("--overload-seconds", type=float, default=5.0)
    parser.add_argument("--timeout", type=float, default=5.0, help="deadline per call, seconds")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--tls-ca-file", type=Path, default=None, help="call over TLS")
    parser.add_argument(
        "--bearer-token-file", type=Path, default=None, help="send this bearer token"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    require_loopback(args.target)
    result = asyncio.run(run(args))
    args.out.write_text(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
