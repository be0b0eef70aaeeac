"""The bench load generator: its request stream, its loopback guard, and the CPU it counts."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from loadtests.bench.loadgen import (
    cpu_by_process,
    main_thread_cpu,
    read_payloads,
    requests,
    require_loopback,
    write_payloads,
)
from scoring.v1 import scoring_pb2


def test_every_request_carries_its_own_request_id(tmp_path: Path) -> None:
    template = scoring_pb2.ScoreRequest(request_id="template", decision_point="card-fraud")
    template.features["amount"].number_value = 12.5
    write_payloads(tmp_path / "p", [template.SerializeToString()])
    sent = list(itertools.islice(requests(read_payloads(tmp_path / "p"), 1, "run"), 3))
    parsed = [scoring_pb2.ScoreRequest.FromString(p) for p in sent]
    assert [p.request_id for p in parsed] == ["run-000000000", "run-000000001", "run-000000002"]
    assert all(p.decision_point == "card-fraud" for p in parsed)
    assert all(p.features["amount"].number_value == 12.5 for p in parsed)


def test_payloads_round_trip(tmp_path: Path) -> None:
    payloads = [b"", b"a", bytes(range(256)) * 300]
    write_payloads(tmp_path / "p", payloads)
    assert read_payloads(tmp_path / "p") == payloads


@pytest.mark.parametrize("target", ["127.0.0.1:5000", "localhost:5000", "[::1]:5000"])
def test_loopback_targets_are_accepted(target: str) -> None:
    require_loopback(target)


@pytest.mark.parametrize("target", ["10.0.0.5:5000", "192.168.1.2:80", "8.8.8.8:53"])
def test_other_targets_are_refused(target: str) -> None:
    with pytest.raises(SystemExit, match="loopback"):
        require_loopback(target)


def test_generators_runs_merge_call_by_call() -> None:
    """Two generators sharing an open loop: counts add up, percentiles are the merged calls'."""
    from loadtests.bench.loadgen import Phase

    first, second = Phase(), Phase()
    first.latencies_us = [1_000.0] * 99
    second.latencies_us = [50_000.0]
    first.refused("CANCELLED", 2_000.0)
    second.refused("RESOURCE_EXHAUSTED", 9_000.0)
    first.seconds, second.seconds = 10.0, 10.2
    first.client_cpu_s, second.client_cpu_s = 3.0, 4.0
    merged = Phase.merged([first.raw(), second.raw()]).summary(1)
    assert merged["calls"] == 100
    assert merged["errors"] == {"CANCELLED": 1, "RESOURCE_EXHAUSTED": 1}
    assert merged["p99_us"] == 1_000.0 and merged["p50_us"] == 1_000.0
    assert merged["error_p99_us_by_code"] == {"CANCELLED": 2_000.0, "RESOURCE_EXHAUSTED": 9_000.0}
    assert merged["seconds"] == 10.2
    assert abs(merged["client_cores"] - 7.0 / 10.2) < 1e-9


# A child that burns ~0.5 s of CPU, then waits for its stdin (the parent's) to close.
_BURNING_CHILD = (
    "import sys, time\n"
    "end = time.process_time() + 0.5\n"
    "while time.process_time() < end: pass\n"
    "print('burnt', flush=True)\n"
    "sys.stdin.read()\n"
)


def test_server_cpu_counts_the_servers_children() -> None:
    """The lineage-on gateway's fdatasyncs run in its sync helper, a child process: a server's
    CPU must include it."""
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import subprocess, sys; subprocess.run([sys.executable, '-c', {_BURNING_CHILD!r}])",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert parent.stdout is not None
        assert parent.stdout.readline() == b"burnt\n"
        own = psutil.Process(parent.pid).cpu_times()
        assert own.user + own.system < 0.4  # the parent only waits
        assert cpu_by_process([parent.pid])[parent.pid] >= 0.45
    finally:
        parent.communicate(timeout=10)


_BURNING_THREAD = (
    "import sys, threading, time\n"
    "def burn():\n"
    "    end = time.thread_time() + 0.5\n"
    "    while time.thread_time() < end: pass\n"
    "t = threading.Thread(target=burn); t.start(); t.join()\n"
    "print('burnt', flush=True)\n"
    "sys.stdin.read()\n"
)


def test_the_main_thread_is_counted_apart_from_the_other_threads() -> None:
    """A grpc.aio server's event loop is its main thread: work done by its other threads (gRPC's
    poller, to_thread workers) must not be counted as the loop's."""
    process = subprocess.Popen(
        [sys.executable, "-c", _BURNING_THREAD], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == b"burnt\n"
        assert cpu_by_process([process.pid])[process.pid] >= 0.45
        assert main_thread_cpu([process.pid])[process.pid] < 0.3  # it only started and joined
    finally:
        process.communicate(timeout=10)
