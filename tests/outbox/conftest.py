"""Fixtures for the outbox tests: a directory per test, the real lineage store process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtests.local.topology import ManagedProcess, start_lineage


@pytest.fixture
def lineage(tmp_path: Path) -> Iterator[ManagedProcess]:
    """A real lineage store on 127.0.0.1 (SQLite in tmp_path/lineage.db)."""
    proc = start_lineage(tmp_path / "lineage.db", tmp_path / "lineage")
    try:
        yield proc
    finally:
        proc.kill()
