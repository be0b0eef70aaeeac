"""Helpers for the lineage tests: an OTLP sender through the real SDK, and lineage queries."""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from gateway.topology import ManagedProcess, entry_point, start_process
from governance.record import (
    DECISION_ID_ATTRIBUTE,
    RECORD_ATTRIBUTE,
    SPAN_NAME,
    DecisionRecord,
    record_to_json,
)
from lineage.v1 import lineage_pb2, lineage_pb2_grpc

MakeRecord = Callable[..., DecisionRecord]

# The machine's PostgreSQL server (trust auth); each test run makes and drops its own databases.
POSTGRES_SERVER = os.environ.get("SCOREGATE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")


@contextlib.contextmanager
def postgres_database(prefix: str = "scoregate_test") -> Iterator[str]:
    """A new, uniquely named PostgreSQL database for one test or module; dropped afterwards."""
    import psycopg

    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(f"{POSTGRES_SERVER}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{POSTGRES_SERVER}/{name}"
    finally:
        with psycopg.connect(f"{POSTGRES_SERVER}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def start_lineage_at(
    db_url: str, workdir: Path, name: str = "lineage", extra: list[str] | None = None
) -> ManagedProcess:
    """The real lineage process on 127.0.0.1, port 0, for any database URL."""
    argv = [
        *entry_point("scoregate-lineage"),
        "--db-url", db_url,
        "--host", "127.0.0.1",
        "--port", "0",
        *(extra or []),
    ]  # fmt: skip
    return start_process(name, argv, workdir)


def uuid7() -> str:
    """A UUIDv7 as the gateway makes them: 48-bit Unix milliseconds, version 7, random bits."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms << 80) | (0x7 << 76) | ((rand >> 62) & 0xFFF) << 64 | (0b10 << 62)
    return str(uuid.UUID(int=value | (rand & ((1 << 62) - 1))))


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
