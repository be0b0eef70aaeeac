"""Fixtures for the lineage store: the real server process, and realistic records."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from lineage_support import (
    BACKENDS,
    MakeRecord,
    database,
    start_lineage,
)
from lineage_support import (
    make_record as build_record,
)

from loadtests.local.topology import ManagedProcess


@pytest.fixture
def make_record() -> MakeRecord:
    """Builds a valid, realistic record; keyword arguments override fields."""
    return build_record


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database on each backend in turn."""
    with database(request.param, tmp_path) as url:
        yield url


@pytest.fixture(scope="module", params=BACKENDS)
def lineage(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ManagedProcess]:
    """A real lineage store process on 127.0.0.1, port 0, with its own database, per backend."""
    workdir = tmp_path_factory.mktemp("lineage")
    with database(request.param, workdir) as url:
        proc = start_lineage(url, workdir)
        try:
            yield proc
        finally:
            assert proc.stop() == 0, proc.log_tail()
