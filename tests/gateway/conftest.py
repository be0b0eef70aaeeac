"""Gateway test fixtures: a real runtime process, and routes files pointing at it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml

from loadtests.local.topology import ManagedProcess, demo_routes, start_gateway, start_runtime
from runtimes.manifest import Manifest, load_manifests


@pytest.fixture(scope="session")
def manifests(model_dir: Path) -> dict[tuple[str, str], Manifest]:
    return load_manifests(model_dir)


@pytest.fixture(scope="session")
def runtime(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagedProcess]:
    """The real KServe runtime serving the demo models on a free port."""
    proc = start_runtime(model_dir, tmp_path_factory.mktemp("runtime"))
    try:
        yield proc
    finally:
        proc.stop()


RoutesWriter = Callable[[Path, dict[str, Any]], Path]


@pytest.fixture(scope="session")
def write_routes() -> RoutesWriter:
    """Writes a routing config as YAML and returns its path."""

    def write(path: Path, config: dict[str, Any]) -> Path:
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    return write


@pytest.fixture(scope="session")
def demo_config(manifests: dict[tuple[str, str], Manifest]) -> Callable[[str], dict[str, Any]]:
    """The demo routing config (card-fraud champion v1, challenger v2) on one runtime address."""
    return lambda address: demo_routes(manifests, address)


@pytest.fixture(scope="module")
def gateway(
    runtime: ManagedProcess,
    model_dir: Path,
    demo_config: Callable[[str], dict[str, Any]],
    write_routes: RoutesWriter,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ManagedProcess]:
    """A real gateway on the demo routes, one per test module (a module may define its own),
    which must stop cleanly."""
    workdir = tmp_path_factory.mktemp("gateway")
    routes = write_routes(workdir / "routes.yaml", demo_config(runtime.address))
    proc = start_gateway(routes, model_dir, workdir)
    try:
        yield proc
    finally:
        assert proc.stop() == 0, proc.log_tail()


@pytest.fixture
async def channel(gateway: ManagedProcess) -> AsyncIterator[grpc.aio.Channel]:
    """A channel to ``gateway`` with gRPC's default client options, as a caller opens one."""
    async with grpc.aio.insecure_channel(gateway.address) as channel:
        yield channel
