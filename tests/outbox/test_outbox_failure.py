"""A disk failure under the outbox: refuse decisions, and leave the load balancer's rotation."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Literal

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from outbox_support import make_record

from gateway.outbox import Outbox, OutboxClosed, OutboxConfig
from gateway.server import SCORING_SERVICE, leave_rotation_on_outbox_failure

Health = tuple[health.aio.HealthServicer, health_pb2_grpc.HealthStub]


def break_the_disk(outbox: Outbox) -> None:
    # A failing disk cannot be had on this machine: swap the open segment for a descriptor that
    # refuses writes, so the next write fails with EBADF as an I/O error would.
    writer = outbox._writer
    os.close(writer._fd)
    writer._fd = os.open(os.devnull, os.O_RDONLY)


@pytest.fixture
async def health_stub() -> AsyncIterator[Health]:
    servicer = health.aio.HealthServicer()
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    for name in ("", SCORING_SERVICE):
        await servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield servicer, health_pb2_grpc.HealthStub(channel)
    await server.stop(None)


@pytest.mark.parametrize("sync", ["process", "loop", "thread"])
async def test_a_write_failure_refuses_decisions_and_reports_not_serving(
    tmp_path: Path, health_stub: Health, sync: Literal["process", "loop", "thread"]
) -> None:
    servicer, stub = health_stub
    outbox = await Outbox.open(OutboxConfig(tmp_path, sync=sync))
    watcher = asyncio.create_task(leave_rotation_on_outbox_failure(outbox, servicer))
    try:
        await outbox.append(make_record())  # a healthy disk: durable
        assert outbox.failure is None
        break_the_disk(outbox)
        with pytest.raises(OutboxClosed, match="not made durable"):
            await outbox.append(make_record())
        with pytest.raises(OutboxClosed, match="failed"):
            await outbox.append(make_record())  # refused up front from now on
        await asyncio.wait_for(watcher, timeout=5)
        for name in ("", SCORING_SERVICE):
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        watcher.cancel()
        await outbox.close(0.1)
