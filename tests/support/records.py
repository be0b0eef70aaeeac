"""Realistic decision records for tests that feed the lineage store or the outbox directly."""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

from gateway.decisions.ids import UuidV7Generator
from lineage.v1.record import DecisionRecord, ReasonEntry, features_sha256

_IDS = UuidV7Generator()

# 2025-11-23T12:13:20Z: a fixed day, so time-range tests know where records fall.
BASE_US = 1_763_900_000_123_457


def uuid7() -> str:
    """A decision id exactly as the gateway makes them."""
    return _IDS.new(time.time_ns())


def make_record(**overrides: Any) -> DecisionRecord:
    """A valid card-fraud decision on the fixed day; keyword arguments override fields."""
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
    received = BASE_US + int.from_bytes(os.urandom(2), "big")
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
        "reasons": (ReasonEntry(code="R12", description="unusual distance from home", rank=1),),
        "reason_catalogue_version": "rc-1",
    }
    fields.update(overrides)
    return DecisionRecord(**fields)
