"""Helpers for the lineage tests: an OTLP sender through the real SDK, and lineage queries."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

# Shared with the other test folders; re-exported for the lineage tests.
from support.postgres import postgres_database as postgres_database
from support.records import make_record as make_record
from support.records import uuid7 as uuid7

from lineage.v1 import lineage_pb2, lineage_pb2_grpc
from lineage.v1.record import DecisionRecord, record_to_json
from lineage.v1.spans import DECISION_ID_ATTRIBUTE, RECORD_ATTRIBUTE, SPAN_NAME
from loadtests.local.topology import ManagedProcess
from loadtests.local.topology import start_lineage as start_lineage

MakeRecord = Callable[..., DecisionRecord]


BACKENDS = ["sqlite", "postgresql"]


@contextlib.contextmanager
def database(backend: str, workdir: Path) -> Iterator[str]:
    """A fresh database URL of the backend: a new SQLite file, or a new PostgreSQL database."""
    if backend == "sqlite":
        yield sqlite_url(workdir / "db" / "lineage.db")
    else:
        with postgres_database() as url:
            yield url


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def send_with_otel_sdk(address: str, records: list[DecisionRecord], other_spans: int = 0) -> None:
    """Emits each record on a decision span through the OpenTelemetry SDK's OTLP/gRPC exporter."""
    provider = TracerProvider(resource=Resource.create({"service.name": "scoregate-test"}))
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=address, insecure=True))
    )
    tracer = provider.get_tracer("tests.governance")
    for record in records:
        with tracer.start_as_current_span("Score"):
            attributes = {
                RECORD_ATTRIBUTE: record_to_json(record),
                DECISION_ID_ATTRIBUTE: record.decision_id,
            }
            with tracer.start_as_current_span(SPAN_NAME, attributes=attributes):
                pass
    for _ in range(other_spans):
        with tracer.start_as_current_span("unrelated.work"):
            pass
    assert provider.force_flush(10_000)
    provider.shutdown()


def get_decision(address: str, decision_id: str) -> lineage_pb2.DecisionRecord:
    with grpc.insecure_channel(address) as channel:
        stub = lineage_pb2_grpc.LineageServiceStub(channel)
        return stub.GetDecision(lineage_pb2.GetDecisionRequest(decision_id=decision_id), timeout=5)


def wait_for_decision(
    address: str, decision_id: str, timeout: float = 10.0
) -> lineage_pb2.DecisionRecord:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return get_decision(address, decision_id)
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.NOT_FOUND or time.monotonic() > deadline:
                raise
        time.sleep(0.05)


class RawDatabase:
    """Direct SQL on a lineage database, bypassing the store (``?`` placeholders on both)."""

    def __init__(self, db_url: str) -> None:
        self.postgres = db_url.startswith("postgres")
        if self.postgres:
            import psycopg

            self._conn: Any = psycopg.connect(db_url, autocommit=True)
        else:
            import sqlite3

            self._conn = sqlite3.connect(db_url.removeprefix("sqlite:///"), isolation_level=None)

    def execute(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        if self.postgres:
            sql = sql.replace("?", "%s")
        cursor = self._conn.execute(sql, params)
        return list(cursor.fetchall()) if cursor.description else []

    def close(self) -> None:
        self._conn.close()


@contextlib.contextmanager
def raw_database(db_url: str) -> Iterator[RawDatabase]:
    db = RawDatabase(db_url)
    try:
        yield db
    finally:
        db.close()


def db_url_of(process: ManagedProcess) -> str:
    args = [str(a) for a in process.popen.args]  # type: ignore[union-attr]
    return args[args.index("--db-url") + 1]
