"""``scoregate lineage show`` as a user runs it: a subprocess, its output and exit code."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime

from lineage_support import MakeRecord, send_with_otel_sdk, uuid7, wait_for_decision

from lineage.v1.record import DecisionRecord
from loadtests.local.topology import ManagedProcess, free_port


def lineage_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "governance.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def stored(lineage: ManagedProcess, make_record: MakeRecord) -> DecisionRecord:
    record = make_record()
    send_with_otel_sdk(lineage.address, [record])
    wait_for_decision(lineage.address, record.decision_id)
    return record


def test_show_prints_a_table(lineage: ManagedProcess, make_record: MakeRecord) -> None:
    record = stored(lineage, make_record)
    done = lineage_cli("show", record.decision_id, "--lineage", lineage.address)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert record.decision_id in out
    assert f"{record.model_name} v{record.model_version}" in out
    assert record.model_sha256 in out
    assert f"{record.score:.6f}" in out
    assert record.features_sha256 in out
    assert record.trace_id in out
    assert "electronics" in out and "1234.56" in out
    assert "decline" in out and record.policy_version in out
    received = datetime.fromtimestamp(record.received_at_us / 1e6, UTC).replace(
        microsecond=record.received_at_us % 1_000_000
    )
    assert received.strftime("%Y-%m-%dT%H:%M:%S.%fZ") in out  # to the microsecond


def test_show_json_is_the_record(lineage: ManagedProcess, make_record: MakeRecord) -> None:
    record = stored(lineage, make_record)
    done = lineage_cli("show", record.decision_id, "--lineage", lineage.address, "--format", "json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["decision_id"] == record.decision_id
    assert data["model"]["artifact_sha256"] == record.model_sha256
    assert data["outputs"]["score"] == record.score
    assert data["inputs"]["features"]["card_present"] == {"bool_value": False}
    assert data["latency_us"] == str(record.latency_us)  # int64 is a string in proto JSON


def test_show_unknown_decision_exits_1(lineage: ManagedProcess) -> None:
    missing = uuid7()
    done = lineage_cli("show", missing, "--lineage", lineage.address)
    assert done.returncode == 1
    assert missing in done.stderr
    assert done.stdout == ""


def test_show_when_lineage_is_unreachable_exits_2() -> None:
    address = f"127.0.0.1:{free_port()}"
    done = lineage_cli("show", uuid7(), "--lineage", address, "--timeout", "2")
    assert done.returncode == 2
    assert "unreachable" in done.stderr and address in done.stderr
