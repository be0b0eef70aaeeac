"""The gateway built by ``gateway.server.create`` inside the test's event loop, in front of the
real runtime: hundreds of concurrent calls from a client with default options, the ready info,
health, and a drain after which calls are refused."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.loop_load import LoopLoad
from gateway.server import create, load_config
from gateway.settings import GatewaySettings
from loadtests.local.topology import ManagedProcess
from runtimes.training.datasets import sample_requests
from scoring.v1 import scoring_pb2_grpc
from scoring.v1.requests import score_request

Config = dict[str, Any]


async def test_a_gateway_created_in_process_serves_concurrent_callers_then_drains(
    runtime: ManagedProcess,
    model_dir: Path,
    demo_config: Callable[[str], Config],
    write_routes: Callable[[Path, Config], Path],
    tmp_path: Path,
) -> None:
    routes_file = write_routes(tmp_path / "routes.yaml", demo_config(runtime.address))
    settings = GatewaySettings(
        routes=routes_file,
        model_dir=model_dir,
        port=0,
        reload_interval_s=0,
        drain_delay_s=0,
        plaintext=True,
        open_access=True,
    )
    gateway = await create(settings, load_config(settings), LoopLoad())
    try:
        ready = await gateway.start()
        assert ready["grpc"] == gateway.address and gateway.port > 0
        features = sample_requests("card-fraud", 300, seed=3)
        async with grpc.aio.insecure_channel(gateway.address) as channel:
            stub = scoring_pb2_grpc.ScoringServiceStub(channel)
            health = health_pb2_grpc.HealthStub(channel)
            serving = await health.Check(health_pb2.HealthCheckRequest())
            assert serving.status == health_pb2.HealthCheckResponse.SERVING
            calls = [
                stub.Score(score_request(f"r{i}", "card-fraud", f"cust-{i}", f))
                for i, f in enumerate(features)
            ]
            answers = await asyncio.gather(*calls)
            assert len({a.decision_id for a in answers}) == 300
            assert {a.model_version for a in answers} == {"1"}
            await gateway.drain()
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.Score(score_request("late", "card-fraud", "cust-x", features[0]))
            assert refused.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
    finally:
        await gateway.close()
    assert gateway.service.admission.in_flight == 0
