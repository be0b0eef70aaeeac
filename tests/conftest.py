"""Shared fixtures: demo models built once per session, the real topology on loopback, and a
caller's stubs to its gateway and lineage store."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from support import postgres

from lineage.v1 import lineage_pb2_grpc
from loadtests.local.topology import Topology
from scoring.v1 import scoring_pb2_grpc


def pytest_report_header() -> str:
    """Which PostgreSQL server the run uses (tests/support/postgres.py), printed once."""
    return f"postgresql: {postgres.plan()}"


def pytest_sessionfinish() -> None:
    """Stops and removes the throwaway PostgreSQL server, if the run started one."""
    postgres.stop_session()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    throwaway = postgres.session_throwaway()
    if throwaway is not None:
        terminalreporter.write_line(
            f"postgresql: used the throwaway server at {throwaway.url}; stopped and removed it"
        )


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo model repository (card-fraud v1/v2, credit-risk v1), built once per test run."""
    from runtimes.training.build import build_all

    out = tmp_path_factory.mktemp("models")
    build_all(out)
    return out


@pytest.fixture(scope="module")
def topology(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    """Runtime, lineage store and gateway as real processes on 127.0.0.1, one set per module."""
    topo = Topology(tmp_path_factory.mktemp("topology"), model_dir).start()
    try:
        yield topo
    finally:
        topo.stop()


@pytest.fixture
async def scoring(topology: Topology) -> AsyncIterator[scoring_pb2_grpc.ScoringServiceStub]:
    """The topology's gateway, on a channel with gRPC's default client options."""
    async with grpc.aio.insecure_channel(topology.gateway.address) as channel:
        yield scoring_pb2_grpc.ScoringServiceStub(channel)


@pytest.fixture
async def lineage(topology: Topology) -> AsyncIterator[lineage_pb2_grpc.LineageServiceStub]:
    """The topology's lineage store, on a channel with gRPC's default client options."""
    async with grpc.aio.insecure_channel(topology.lineage.address) as channel:
        yield lineage_pb2_grpc.LineageServiceStub(channel)
