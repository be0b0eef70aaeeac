"""Helpers for the outbox tests: realistic records and lineage-store look-ups."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import grpc
from support.records import make_record as make_record
from support.records import uuid7 as uuid7

from lineage.v1 import lineage_pb2, lineage_pb2_grpc
from loadtests.local.topology import ManagedProcess, start_lineage


def restart_lineage(db_path: Path, workdir: Path, address: str) -> ManagedProcess:
    """The lineage store again, on the same database and the same address the sender uses."""
    port = address.rsplit(":", 1)[1]
    return start_lineage(db_path, workdir, "lineage-restarted", ["--port", port])


def get_decisions(address: str, ids: list[str]) -> dict[str, lineage_pb2.DecisionRecord]:
    """The stored records of ``ids`` that the store has (NOT_FOUND ones are left out)."""
    found: dict[str, lineage_pb2.DecisionRecord] = {}
    with grpc.insecure_channel(address) as channel:
        stub = lineage_pb2_grpc.LineageServiceStub(channel)
        for decision_id in ids:
            try:
                request = lineage_pb2.GetDecisionRequest(decision_id=decision_id)
                found[decision_id] = stub.GetDecision(request, timeout=5)
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.NOT_FOUND:
                    raise
    return found


def stored_ids(db_path: Path) -> list[str]:
    """Every decision id row in the store's SQLite database, duplicates included if any."""
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as conn:
        return [row[0] for row in conn.execute("SELECT decision_id FROM decisions")]
