"""Fixtures for the lineage store: the real server process, and realistic records."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lineage_support import MakeRecord, postgres_database, sqlite_url, start_lineage_at, uuid7

from gateway.topology import ManagedProcess
from governance.record import (
    DecisionRecord,
    ReasonEntry,
    features_sha256,
)


def _make_record(**overrides: Any) -> DecisionRecord:
    features: dict[str, float | str | bool] = {
        "amount": 1234.56,
        "merchant_category": "electronics",
        "channel": "ecommerce",
        "hour_of_day": 3.0,
        "distance_from_home_km": 812.25,
        "txn_count_24h": 7.0,
        "card_present": False,
        "account_age_days": 41.0,
    }
    features = overrides.pop("features", features)
    received = 1_763_900_000_123_457 + int.from_bytes(os.urandom(2), "big")
    fields: dict[str, Any] = {
        "decision_id": uuid7(),
        "request_id": f"req-{uuid.uuid4().hex[:12]}",
        "decision_point": "card-fraud",
        "entity_key": "acct-00042",
        "received_at_us": received,
        "decided_at_us": received + 1_871,
        "model_name": "card-fraud",
        "model_version": "2",
        "model_sha256": "9f" * 32,
        "runtime_instance": "127.0.0.1:9001/pid-4242",
        "arm": "primary",
        "config_version": "cfg-3b1c",
        "fallback_reason": "",
        "attempts": 1,
        "features": features,
        "features_sha256": features_sha256(features),
        "feature_schema_version": "fs-77aa",
        "score": 0.8731942736011553,
        "decision": "decline",
        "policy_version": "card-fraud-policy-1",
        "trace_id": uuid.uuid4().hex,
        "span_id": uuid.uuid4().hex[:16],
        "gateway_instance": "gw-1",
        "reasons": (ReasonEntry("R12", "unusual distance from home", 1),),
        "reason_catalogue_version": "rc-1",
    }
    fields.update(overrides)
    return DecisionRecord(**fields)


@pytest.fixture
def make_record() -> MakeRecord:
    """Builds a valid, realistic record; keyword arguments override fields."""
    return _make_record


BACKENDS = ["sqlite", "postgresql"]


@contextlib.contextmanager
def database(backend: str, workdir: Path) -> Iterator[str]:
    """A fresh database URL of the backend: a new SQLite file, or a new PostgreSQL database."""
    if backend == "sqlite":
        yield sqlite_url(workdir / "db" / "lineage.db")
    else:
        with postgres_database() as url:
            yield url


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
        proc = start_lineage_at(url, workdir)
        try:
            yield proc
        finally:
            assert proc.stop() == 0, proc.log_tail()
