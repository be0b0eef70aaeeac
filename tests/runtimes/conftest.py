"""Runtime fixtures: the real ``scoregate-runtime`` process serving the demo repository.

The demo repository itself (``model_dir``) is built once per session by tests/conftest.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtests.local.topology import ManagedProcess, start_runtime
from runtimes.manifest import Manifest, load_manifests


@pytest.fixture(scope="session")
def manifests(model_dir: Path) -> dict[str, Manifest]:
    """The demo manifests by served name (card-fraud-v1, card-fraud-v2, credit-risk-v1)."""
    return {m.served_name: m for m in load_manifests(model_dir).values()}


@pytest.fixture(scope="module")
def runtime(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagedProcess]:
    """One runtime process on 127.0.0.1 with free ports, stopped (SIGTERM) after the module."""
    proc = start_runtime(model_dir, tmp_path_factory.mktemp("runtime"))
    try:
        yield proc
    finally:
        proc.stop()
