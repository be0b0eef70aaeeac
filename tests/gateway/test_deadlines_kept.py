"""Caller deadlines kept by construction, on real processes: with the runtime hanging, hundreds
of calls with a 50 ms deadline, several in flight, are all answered by the rules fallback before
their deadline, through the durable outbox to a real lineage store."""

from __future__ import annotations

import asyncio
import shutil
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from fault_proxy import FaultProxy

from gateway.demo_rules import DEMO_RULES
from loadtests.local.topology import ManagedProcess, start_gateway, start_lineage
from runtimes.training.datasets import sample_requests
from scoring.v1 import scoring_pb2_grpc
from scoring.v1.requests import score_request

Config = dict[str, Any]
CALLS = 400
IN_FLIGHT = 8
DEADLINE_S = 0.05


@pytest.fixture
def proxy(runtime: ManagedProcess) -> Iterator[FaultProxy]:
    proxy = FaultProxy(runtime.address).start()
    yield proxy
    proxy.stop()


async def test_a_hanging_runtime_is_answered_by_the_fallback_before_every_deadline(
    proxy: FaultProxy,
    model_dir: Path,
    demo_config: Callable[[str], Config],
    write_routes: Callable[[Path, Config], Path],
    tmp_path: Path,
) -> None:
    config = demo_config(proxy.address)
    config["rules"] = {"card-fraud-rules": {"file": "card-fraud-rules.yaml"}}
    config["decision_points"]["card-fraud"]["fallback"] = {"chain": [{"rules": "card-fraud-rules"}]}
    # A breaker that never opens: every call waits out its attempt deadline, the hard case.
    config["circuit_breaker"] = {"consecutive_failures": 1_000_000, "error_rate": 1.0}
    shutil.copy(DEMO_RULES["card-fraud"], tmp_path / "card-fraud-rules.yaml")
    routes = write_routes(tmp_path / "routes.yaml", config)
    lineage = start_lineage(tmp_path / "lineage.db", tmp_path)
    gateway = start_gateway(
        routes, model_dir, tmp_path, lineage_endpoint=lineage.address,
        outbox_dir=tmp_path / "outbox",
    )  # fmt: skip
    features = sample_requests("card-fraud", 50, seed=4)
    codes: Counter[str] = Counter()
    latencies: list[float] = []
    try:
        async with grpc.aio.insecure_channel(gateway.address) as channel:
            stub = scoring_pb2_grpc.ScoringServiceStub(channel)
            warm = await stub.Score(score_request("w", "card-fraud", "c", features[0]), timeout=5)
            assert warm.arm == "primary"
            proxy.set("hang")
            slots = asyncio.Semaphore(IN_FLIGHT)

            async def one(i: int) -> None:
                request = score_request(f"r{i}", "card-fraud", f"c{i}", features[i % 50])
                async with slots:
                    started = time.monotonic()
                    try:
                        answer = await stub.Score(request, timeout=DEADLINE_S)
                        codes[f"OK {answer.arm} {answer.fallback_reason}"] += 1
                    except grpc.aio.AioRpcError as e:
                        codes[e.code().name] += 1
                    latencies.append(time.monotonic() - started)

            await asyncio.gather(*(one(i) for i in range(CALLS)))
    finally:
        gateway.stop()
        lineage.stop()
    # gRPC's own verdict at the caller: an answer after the caller's deadline is DEADLINE_EXCEEDED.
    q = statistics.quantiles(latencies, n=100)
    seen = f"latency p50 {q[49] * 1e3:.1f}, p99 {q[98] * 1e3:.1f}, max {max(latencies) * 1e3:.1f}"
    assert codes == Counter({"OK fallback timeout": CALLS}), (codes, seen)
