"""Helpers for the outbox tests: realistic records and lineage-store look-ups."""

from __future__ import annotations

import os
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

import grpc

from gateway.topology import ManagedProcess, entry_point, start_process
from governance.record import DecisionRecord, ReasonEntry, features_sha256
from lineage.v1 import lineage_pb2, lineage_pb2_grpc


def uuid7() -> str:
    """A UUIDv7 as the gateway makes them: 48-bit Unix milliseconds, version 7, random bits."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms << 80) | (0x7 << 76) | ((rand >> 62) & 0xFFF) << 64 | (0b10 << 62)
    return str(uuid.UUID(int=value | (rand & ((1 << 62) - 1))))


def make_record(**overrides: Any) -> DecisionRecord:
    """A valid card-fraud decision; keyword arguments override fields."""
    features: dict[str, float | str | bool] = {
        "amount": round(10 + int.from_bytes(os.urandom(2), "big") / 7, 2),
        "merchant_category": "electronics",
        "channel": "ecommerce",
        "hour_of_day": 3.0,
        "distance_from_home_km": 812.25,
        "txn_count_24h": 7.0,
        "card_present": False,
        "account_age_days": 41.0,
    }
    received = time.time_ns() // 1000
    fields: dict[str, Any] = {
        "decision_id": uuid7(),
        "request_id": f"req-{uuid.uuid4().hex[:12]}",
        "decision_point": "card-fraud",
        "entity_key": f"acct-{uuid.uuid4().hex[:6]}",
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
        "gateway_instance": "gw-test",
        "reasons": (ReasonEntry("R12", "unusual distance from home", 1),),
        "reason_catalogue_version": "rc-1",
    }
    fields.update(overrides)
    return DecisionRecord(**fields)


def restart_lineage(db_path: Path, workdir: Path, address: str) -> ManagedProcess:
    """The lineage store again, on the same database and the same address the sender uses."""
    host, port = address.rsplit(":", 1)
    argv = [
        *entry_point("scoregate-lineage"),
        "--db-url", f"sqlite:///{db_path}",
        "--host", host,
        "--port", port,
    ]  # fmt: skip
    return start_process("lineage-restarted", argv, workdir)


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
