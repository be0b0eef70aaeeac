"""The questions a risk analyst asks, through the real process's LineageService, both backends."""

from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import UTC, datetime

import grpc
import pytest
from lineage_support import MakeRecord, send_with_otel_sdk, uuid7, wait_for_decision
from test_lineage_cli import lineage_cli

from governance.convert import timestamp_from_us, timestamp_to_us
from lineage.v1 import lineage_pb2, lineage_pb2_grpc
from lineage.v1.record import REASONS_WANTED, ReasonEntry
from loadtests.local.topology import ManagedProcess

MINUTE = 60_000_000
T0 = 1_763_900_000_000_000


def iso(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def stub_call(address: str, method: str, request: object) -> object:
    with grpc.insecure_channel(address) as channel:
        return getattr(lineage_pb2_grpc.LineageServiceStub(channel), method)(request, timeout=10)


def code_of(address: str, method: str, request: object) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        stub_call(address, method, request)
    return info.value.code()  # type: ignore[no-any-return]


def route_change(
    at_us: int, config: str, weights: dict[tuple[str, str], float]
) -> lineage_pb2.RecordRouteChangeRequest:
    """card-fraud's arms as {(arm, version): weight}; credit-risk always on v1."""
    targets = [
        lineage_pb2.ArmTarget(
            decision_point="card-fraud", arm=arm, model_name="card-fraud", model_version=v, weight=w
        )
        for (arm, v), w in weights.items()
    ]
    targets.append(
        lineage_pb2.ArmTarget(
            decision_point="credit-risk",
            arm="primary",
            model_name="credit-risk",
            model_version="1",
            weight=1.0,
        )
    )
    return lineage_pb2.RecordRouteChangeRequest(
        change=lineage_pb2.RouteChange(
            changed_at=timestamp_from_us(at_us),
            config_version=config,
            diff_json=json.dumps(
                {"card-fraud": {"weights": {f"{a}/{v}": w for (a, v), w in weights.items()}}}
            ),
            targets=targets,
            source="gw-1",
        )
    )


def test_overrides_and_outcomes_are_returned_with_the_decision(
    lineage: ManagedProcess, make_record: MakeRecord
) -> None:
    record = make_record()
    send_with_otel_sdk(lineage.address, [record])
    wait_for_decision(lineage.address, record.decision_id)
    override = lineage_pb2.Override(
        decision_id=record.decision_id,
        reviewer="a.analyst",
        at=timestamp_from_us(T0),
        new_decision="approve",
        reason="customer confirmed the purchase",
    )
    first = stub_call(
        lineage.address, "RecordOverride", lineage_pb2.RecordOverrideRequest(override=override)
    )
    again = stub_call(
        lineage.address, "RecordOverride", lineage_pb2.RecordOverrideRequest(override=override)
    )
    assert first == again  # a retry is recognised by its content
    outcome = lineage_pb2.Outcome(
        decision_id=record.decision_id,
        label="not_fraud",
        at=timestamp_from_us(T0 + MINUTE),
        source="chargebacks",
    )
    stub_call(lineage.address, "RecordOutcome", lineage_pb2.RecordOutcomeRequest(outcome=outcome))

    got = stub_call(
        lineage.address,
        "GetDecision",
        lineage_pb2.GetDecisionRequest(decision_id=record.decision_id),
    )
    assert isinstance(got, lineage_pb2.DecisionRecord)
    assert [(o.reviewer, o.new_decision, o.reason) for o in got.overrides] == [
        ("a.analyst", "approve", "customer confirmed the purchase")
    ]
    assert [(o.label, o.source, timestamp_to_us(o.at)) for o in got.outcomes] == [
        ("not_fraud", "chargebacks", T0 + MINUTE)
    ]
    assert got.seq > 0 and len(got.chain_sha256) == 64 and len(got.record_sha256) == 64
    shown = lineage_cli("show", record.decision_id, "--lineage", lineage.address)
    assert "approve by a.analyst" in shown.stdout and "not_fraud" in shown.stdout


def test_overrides_and_outcomes_of_unknown_decisions_are_not_found(lineage: ManagedProcess) -> None:
    override = lineage_pb2.Override(
        decision_id=uuid7(), reviewer="r", new_decision="approve", reason="x"
    )
    assert (
        code_of(
            lineage.address, "RecordOverride", lineage_pb2.RecordOverrideRequest(override=override)
        )
        == grpc.StatusCode.NOT_FOUND
    )
    outcome = lineage_pb2.Outcome(decision_id=uuid7(), label="default", source="collections")
    assert (
        code_of(lineage.address, "RecordOutcome", lineage_pb2.RecordOutcomeRequest(outcome=outcome))
        == grpc.StatusCode.NOT_FOUND
    )


def test_override_without_reviewer_is_invalid(
    lineage: ManagedProcess, make_record: MakeRecord
) -> None:
    record = make_record()
    send_with_otel_sdk(lineage.address, [record])
    wait_for_decision(lineage.address, record.decision_id)
    override = lineage_pb2.Override(
        decision_id=record.decision_id, new_decision="approve", reason="x"
    )
    with pytest.raises(grpc.RpcError) as info:
        stub_call(
            lineage.address, "RecordOverride", lineage_pb2.RecordOverrideRequest(override=override)
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "reviewer" in (info.value.details() or "")


def test_decisions_by_entity_and_by_model_with_counts(
    lineage: ManagedProcess, make_record: MakeRecord
) -> None:
    entity = f"acct-{uuid.uuid4().hex[:8]}"
    base = T0 + 10 * MINUTE
    records = [
        make_record(
            entity_key=entity,
            received_at_us=base + i * MINUTE,
            decided_at_us=base + i * MINUTE + 900,
            model_version=v,
            arm=arm,
            decision=d,
        )
        for i, (v, arm, d) in enumerate(
            [
                ("1", "primary", "approve"),
                ("1", "primary", "decline"),
                ("2", "canary", "approve"),
                ("1", "primary", "approve"),
            ]
        )
    ]
    send_with_otel_sdk(lineage.address, records)
    for r in records:
        wait_for_decision(lineage.address, r.decision_id)
    request = lineage_pb2.ListDecisionsRequest(entity_key=entity, limit=3)
    page = stub_call(lineage.address, "ListDecisions", request)
    assert isinstance(page, lineage_pb2.ListDecisionsResponse)
    assert [d.decision_id for d in page.decisions] == [r.decision_id for r in records[:3]]
    assert page.next_page_token
    rest = stub_call(
        lineage.address,
        "ListDecisions",
        lineage_pb2.ListDecisionsRequest(entity_key=entity, page_token=page.next_page_token),
    )
    assert [d.decision_id for d in rest.decisions] == [records[3].decision_id]  # type: ignore[attr-defined]
    counts = {(c.model_version, c.arm, c.decision): c.count for c in page.counts}
    assert counts == {
        ("1", "primary", "approve"): 2,
        ("1", "primary", "decline"): 1,
        ("2", "canary", "approve"): 1,
    }

    by_model = lineage_cli(
        "decisions", "--lineage", lineage.address, "--model", "card-fraud", "--version", "1",
        "--since", iso(base), "--until", iso(base + 2 * MINUTE), "--format", "csv",
    )  # fmt: skip
    assert by_model.returncode == 0, by_model.stderr
    rows = list(csv.DictReader(io.StringIO(by_model.stdout)))
    mine = [r for r in rows if r["entity_key"] == entity]
    assert [r["decision_id"] for r in mine] == [records[0].decision_id, records[1].decision_id]
    assert all(r["version"] == "1" for r in rows)

    table = lineage_cli("decisions", "--lineage", lineage.address, "--entity", entity)
    assert table.returncode == 0 and "4 of 4 decisions" in table.stdout


def test_list_needs_exactly_one_selector(lineage: ManagedProcess) -> None:
    request = lineage_pb2.ListDecisionsRequest(entity_key="x", model_name="card-fraud")
    assert code_of(lineage.address, "ListDecisions", request) == grpc.StatusCode.INVALID_ARGUMENT


def test_serving_at_and_model_history_from_route_changes(
    lineage: ManagedProcess, make_record: MakeRecord
) -> None:
    t = T0 + 1000 * MINUTE  # a stretch of time no other test uses
    changes = [
        route_change(t, "cfg-a", {("primary", "1"): 1.0}),
        route_change(t + 10 * MINUTE, "cfg-b", {("primary", "1"): 0.9, ("canary", "2"): 0.1}),
        route_change(t + 20 * MINUTE, "cfg-c", {("primary", "2"): 1.0}),
    ]
    for change in changes:
        reply = stub_call(lineage.address, "RecordRouteChange", change)
    again = stub_call(lineage.address, "RecordRouteChange", changes[-1])
    assert again.duplicate and again.change.change_id == reply.change.change_id  # type: ignore[attr-defined]
    at = t + 15 * MINUTE
    near = [
        make_record(
            decided_at_us=at - 5_000_000,
            received_at_us=at - 5_001_000,
            model_version="1",
            arm="primary",
        ),
        make_record(
            decided_at_us=at + 2_000_000,
            received_at_us=at + 1_999_000,
            model_version="2",
            arm="canary",
        ),
        make_record(
            decided_at_us=at + 300_000_000, received_at_us=at + 299_999_000, model_version="1"
        ),
    ]
    send_with_otel_sdk(lineage.address, near)
    for r in near:
        wait_for_decision(lineage.address, r.decision_id)

    request = lineage_pb2.GetServingAtRequest(
        decision_point="card-fraud", at=timestamp_from_us(at), window_s=60
    )
    answer = stub_call(lineage.address, "GetServingAt", request)
    assert isinstance(answer, lineage_pb2.GetServingAtResponse)
    assert answer.in_force.config_version == "cfg-b"
    assert {(x.arm, x.model_version, x.weight) for x in answer.targets} == {
        ("primary", "1", 0.9),
        ("canary", "2", 0.1),
    }
    assert [d.decision_id for d in answer.decisions] == [near[1].decision_id, near[0].decision_id]
    assert {(c.model_version, c.arm): c.count for c in answer.counts} == {
        ("1", "primary"): 1,
        ("2", "canary"): 1,
    }

    before = lineage_pb2.GetServingAtRequest(
        decision_point="card-fraud", at=timestamp_from_us(t + 5 * MINUTE)
    )
    assert stub_call(lineage.address, "GetServingAt", before).in_force.config_version == "cfg-a"  # type: ignore[attr-defined]

    shown = lineage_cli(
        "serving-at", "--lineage", lineage.address, "--point", "card-fraud",
        "--at", iso(at),
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert "cfg-b" in shown.stdout and "canary" in shown.stdout and "0.1" in shown.stdout

    history = stub_call(
        lineage.address,
        "GetModelHistory",
        lineage_pb2.GetModelHistoryRequest(model_name="card-fraud"),
    )
    periods = {
        (
            p.arm,
            p.model_version,
            timestamp_to_us(p.started_at),
            timestamp_to_us(p.stopped_at) if p.HasField("stopped_at") else None,
        )
        for p in history.routed  # type: ignore[attr-defined]
    }
    assert ("primary", "1", t, t + 20 * MINUTE) in periods
    assert ("canary", "2", t + 10 * MINUTE, t + 20 * MINUTE) in periods
    assert ("primary", "2", t + 20 * MINUTE, None) in periods
    observed = {(o.model_version, o.arm) for o in history.observed}  # type: ignore[attr-defined]
    assert {("1", "primary"), ("2", "canary")} <= observed


def test_checkpoint_rpc_reports_the_chain_head(
    lineage: ManagedProcess, make_record: MakeRecord
) -> None:
    before = stub_call(lineage.address, "GetCheckpoint", lineage_pb2.GetCheckpointRequest())
    record = make_record()
    send_with_otel_sdk(lineage.address, [record])
    got = wait_for_decision(lineage.address, record.decision_id)
    after = stub_call(lineage.address, "GetCheckpoint", lineage_pb2.GetCheckpointRequest())
    assert after.size > before.size  # type: ignore[attr-defined]
    assert after.size >= got.seq  # type: ignore[attr-defined]


def test_reasons_and_contributions_by_grpc_cli_and_show(
    lineage: ManagedProcess, make_record: MakeRecord
) -> None:
    """A model decision's reasons name their feature and contribution, and its contributions
    come back exactly; decisions are found by principal reason or by a reason at any rank."""
    principal, other = f"P{uuid.uuid4().hex[:6]}", f"O{uuid.uuid4().hex[:6]}"
    contributions = {"account_age_days": 0.8123000264167786, "amount": -0.125, "channel": 0.0}
    base = T0 + 600 * MINUTE

    def reason(code: str, rank: int, feature: str) -> ReasonEntry:
        value = contributions.get(feature, 0.5)
        return ReasonEntry(
            code=code, description=f"because {feature}", rank=rank, feature=feature,
            contribution=value,
        )  # fmt: skip

    records = [
        make_record(
            decided_at_us=base + i * MINUTE,
            decision=decision,
            decision_point=point,
            model_name=point,
            reasons=reasons,
            contributions=contributions,
            contributions_base=-3.25,
            extra={REASONS_WANTED: "4"},
        )
        for i, (point, decision, reasons) in enumerate(
            [
                ("card-fraud", "decline", (reason(principal, 1, "account_age_days"),)),
                ("card-fraud", "review", (reason(principal, 1, "account_age_days"),)),
                ("card-fraud", "decline", (reason(other, 1, "amount"), reason(principal, 2, "x"))),
                ("credit-risk", "decline", (reason(principal, 1, "account_age_days"),)),
            ]
        )
    ]
    send_with_otel_sdk(lineage.address, records)
    for r in records:
        wait_for_decision(lineage.address, r.decision_id)

    got = stub_call(
        lineage.address,
        "GetDecision",
        lineage_pb2.GetDecisionRequest(decision_id=records[0].decision_id),
    )
    assert isinstance(got, lineage_pb2.DecisionRecord)
    assert dict(got.outputs.contributions) == contributions
    assert got.outputs.contributions_base == -3.25 and got.outputs.reasons_wanted == 4
    [first] = got.outputs.reasons
    assert (first.code, first.rank, first.feature) == (principal, 1, "account_age_days")
    assert first.contribution == contributions["account_age_days"]

    def listed(*args: str) -> list[str]:
        done = lineage_cli(
            "decisions", "--lineage", lineage.address, "--since", iso(base),
            "--until", iso(base + 10 * MINUTE), "--format", "csv", *args,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return [r["decision_id"] for r in csv.DictReader(io.StringIO(done.stdout))]

    ids = [r.decision_id for r in records]
    assert listed("--reason", principal) == [ids[0], ids[1], ids[3]]
    assert listed("--reason", principal, "--any-rank") == ids
    assert listed("--reason", principal, "--any-rank", "--decision", "decline") == [
        ids[0], ids[2], ids[3],
    ]  # fmt: skip
    assert listed("--reason", principal, "--point", "card-fraud", "--decision", "decline") == [
        ids[0]
    ]
    assert listed("--reason", other) == [ids[2]]
    assert listed("--model", "card-fraud", "--reason", principal) == [ids[0], ids[1]]
    refused = lineage_cli("decisions", "--lineage", lineage.address, "--any-rank")
    assert refused.returncode == 2 and "--reason" in refused.stderr

    shown = lineage_cli("show", records[2].decision_id, "--lineage", lineage.address)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert any(line.split() == ["reason", "catalogue", "rc-1"] for line in lines), shown.stdout
    assert f"{other}  because amount  (amount -0.125000)" in shown.stdout
    assert f"{principal}  because x  (x +0.500000)" in shown.stdout
    section = lines[next(n for n, line in enumerate(lines) if line.startswith("contributions")) :]
    # Largest push either way first, then the base and the sum.
    assert [line.split()[0] for line in section[1:6]] == [
        "account_age_days", "amount", "channel", "base", "raw",
    ]  # fmt: skip
    assert section[1].split()[1] == "+0.812300" and section[4].split()[-1] == "-3.250000"
    assert section[5].split()[2] == f"{sum(contributions.values()) - 3.25:+.6f}"
