"""SIGTERM under load on the real gateway process: every call that reached the gateway is
answered or refused with UNAVAILABLE (go elsewhere), none is CANCELLED, and health says
NOT_SERVING before the listener closes."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from loadtests.local.topology import ManagedProcess, start_gateway
from runtimes.training.datasets import sample_requests
from scoring.v1 import scoring_pb2_grpc
from scoring.v1.requests import score_request

Config = dict[str, Any]
CALLERS = 48


# Bounded: with a backlog large enough that gRPC core sheds nothing (its CANCELLED refusals of
# calls that never reached the gateway are load shedding, tested in test_gateway_traffic.py).
BOUNDED = ["--max-in-flight", "64", "--max-pending-calls", "1000"]


@pytest.mark.parametrize("extra", [[], BOUNDED], ids=["unbounded", "bounded"])
async def test_sigterm_under_load_answers_or_refuses_every_call_never_cancels(
    runtime: ManagedProcess,
    model_dir: Path,
    demo_config: Callable[[str], Config],
    write_routes: Callable[[Path, Config], Path],
    tmp_path: Path,
    extra: list[str],
) -> None:
    routes = write_routes(tmp_path / "routes.yaml", demo_config(runtime.address))
    gateway = start_gateway(
        routes, model_dir, tmp_path, extra_args=[*extra, "--drain-delay-s", "0.3"]
    )
    features = sample_requests("card-fraud", 64, seed=8)
    codes: Counter[str] = Counter()
    health_after_signal: list[int] = []
    signalled = asyncio.Event()
    loaded = asyncio.Event()

    async def caller(stub: scoring_pb2_grpc.ScoringServiceStub, k: int) -> None:
        i = 0
        while True:
            request = score_request(f"c{k}-{i}", "card-fraud", f"cust-{k}", features[i % 64])
            i += 1
            try:
                await stub.Score(request, timeout=5)
                codes["OK"] += 1
                if codes["OK"] >= 500:
                    loaded.set()
            except grpc.aio.AioRpcError as e:
                codes[e.code().name] += 1
                if signalled.is_set() and e.code() == grpc.StatusCode.UNAVAILABLE:
                    return
            if signalled.is_set() and codes["UNAVAILABLE"] > 4 * CALLERS:
                return

    async with grpc.aio.insecure_channel(gateway.address) as channel:
        stub = scoring_pb2_grpc.ScoringServiceStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        await channel.channel_ready()
        callers = [asyncio.ensure_future(caller(stub, k)) for k in range(CALLERS)]
        await asyncio.wait_for(loaded.wait(), 30)  # the load is up: now the signal
        gateway.popen.send_signal(signal.SIGTERM)
        signalled.set()
        started = time.monotonic()
        health_after_signal.append(
            (await health.Check(health_pb2.HealthCheckRequest(), timeout=2)).status
        )
        await asyncio.wait_for(asyncio.gather(*callers), 20)
    assert await asyncio.to_thread(gateway.popen.wait, 15) == 0, gateway.log_tail()
    assert time.monotonic() - started < 15
    assert health_after_signal == [health_pb2.HealthCheckResponse.NOT_SERVING]
    assert set(codes) <= {"OK", "UNAVAILABLE"}, codes
    assert codes["UNAVAILABLE"] >= CALLERS and codes["OK"] >= 500, codes
