"""Server reflection v1 and v1alpha on the gateway and the lineage store, real processes."""

from __future__ import annotations

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from support import reflection_v1

from loadtests.local.topology import Topology

V1 = "grpc.reflection.v1.ServerReflection"
V1ALPHA = "grpc.reflection.v1alpha.ServerReflection"
SERVERS = {
    "gateway": {"scoring.v1.ScoringService", "grpc.health.v1.Health", V1, V1ALPHA},
    "lineage": {
        "lineage.v1.LineageService",
        "opentelemetry.proto.collector.trace.v1.TraceService",
        "grpc.health.v1.Health",
        V1,
        V1ALPHA,
    },
}
SERVICE_OF = {"gateway": "scoring.v1.ScoringService", "lineage": "lineage.v1.LineageService"}


def address(topology: Topology, server: str) -> str:
    return topology.gateway.address if server == "gateway" else topology.lineage.address


@pytest.mark.parametrize("server", SERVERS)
async def test_a_v1_client_lists_every_service(server: str, topology: Topology) -> None:
    assert await reflection_v1.list_services(address(topology, server)) == SERVERS[server]


@pytest.mark.parametrize("server", SERVERS)
async def test_a_v1_client_gets_the_descriptors(server: str, topology: Topology) -> None:
    at = address(topology, server)
    assert any(
        name.endswith(".proto")
        for name in await reflection_v1.file_names_for(at, SERVICE_OF[server])
    )
    assert "grpc/reflection/v1/reflection.proto" in await reflection_v1.file_names_for(at, V1)


@pytest.mark.parametrize("server", SERVERS)
async def test_a_v1alpha_client_still_lists_every_service(server: str, topology: Topology) -> None:
    async with grpc.aio.insecure_channel(address(topology, server)) as channel:
        replies = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
        )
        names = {s.name async for reply in replies for s in reply.list_services_response.service}
    assert names == SERVERS[server]
