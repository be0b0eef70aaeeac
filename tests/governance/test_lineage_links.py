"""Shadow links and fallback details, from the gateway that records them to the API and CLI.

Real processes on both backends: a runtime, a lineage store and a gateway delivering through its
outbox. card-fraud mirrors every request to v2 as a shadow; credit-risk's runtime is down (its
address accepts no connections), so its rules file answers as the fallback.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from lineage_support import (
    BACKENDS,
    MakeRecord,
    database,
    get_decision,
    raw_database,
    uuid7,
    wait_for_decision,
)
from support.waiting import wait_until

from gateway.demo_rules import DEMO_RULES
from governance.store import PostgresLineageStore, SqliteLineageStore
from governance.store.base import LineageStore
from governance.store.links import shadows_sql
from governance.store.migrations import (
    POSTGRES_MIGRATIONS,
    SHADOW_PARENT_VERSION,
    SQLITE_MIGRATIONS,
)
from lineage.v1 import lineage_pb2, lineage_pb2_grpc
from lineage.v1 import record as contract
from loadtests.local.topology import (
    ManagedProcess,
    demo_routes,
    free_port,
    start_gateway,
    start_lineage,
    start_runtime,
)
from runtimes.manifest import load_manifests
from runtimes.training.datasets import sample_requests
from scoring.v1 import scoring_pb2, scoring_pb2_grpc
from scoring.v1.requests import score_request


@dataclass
class Stack:
    gateway: ManagedProcess
    lineage: ManagedProcess
    db_url: str


def linked_routes(model_dir: Path, runtime_address: str) -> dict[str, Any]:
    config = demo_routes(load_manifests(model_dir), runtime_address)
    card = config["decision_points"]["card-fraud"]
    card["shadows"] = [{"target": {"model": "card-fraud", "version": "2"}}]
    config["models"]["credit-risk"]["versions"]["1"]["endpoints"] = [f"127.0.0.1:{free_port()}"]
    config["rules"] = {"credit-risk-rules": {"file": str(DEMO_RULES["credit-risk"])}}
    config["decision_points"]["credit-risk"]["fallback"] = {
        "chain": [{"rules": "credit-risk-rules"}]
    }
    return config


@pytest.fixture(scope="module")
def runtime(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagedProcess]:
    proc = start_runtime(model_dir, tmp_path_factory.mktemp("links-runtime"))
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module", params=BACKENDS)
def stack(
    request: pytest.FixtureRequest,
    runtime: ManagedProcess,
    model_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp(f"links-{request.param}")
    with database(request.param, workdir) as url:
        lineage = start_lineage(url, workdir)
        try:
            routes = workdir / "routes.yaml"
            routes.write_text(yaml.safe_dump(linked_routes(model_dir, runtime.address)))
            gateway = start_gateway(
                routes,
                model_dir,
                workdir,
                lineage_endpoint=lineage.address,
                outbox_dir=workdir / "outbox",
            )
            try:
                yield Stack(gateway, lineage, url)
            finally:
                assert gateway.stop() == 0, gateway.log_tail()
        finally:
            assert lineage.stop() == 0, lineage.log_tail()


def score(stack: Stack, point: str, seed: int) -> scoring_pb2.ScoreResponse:
    features = sample_requests(point, 1, seed=seed)[0]
    request = score_request(f"links-{seed}", point, f"cust-{seed}", features)
    with grpc.insecure_channel(stack.gateway.address) as channel:
        response: scoring_pb2.ScoreResponse = scoring_pb2_grpc.ScoringServiceStub(channel).Score(
            request, timeout=5
        )
    return response


def list_shadows(address: str, decision_id: str) -> lineage_pb2.ListShadowsResponse:
    with grpc.insecure_channel(address) as channel:
        stub = lineage_pb2_grpc.LineageServiceStub(channel)
        request = lineage_pb2.ListShadowsRequest(decision_id=decision_id)
        reply: lineage_pb2.ListShadowsResponse = stub.ListShadows(request, timeout=5)
    return reply


def wait_for_shadows(
    address: str, decision_id: str, timeout: float = 15.0
) -> lineage_pb2.ListShadowsResponse:
    """The shadows once at least one is stored (the primary and its shadow arrive apart)."""

    def shadows() -> lineage_pb2.ListShadowsResponse:
        try:
            return list_shadows(address, decision_id)
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.NOT_FOUND:
                raise
            return lineage_pb2.ListShadowsResponse()

    return wait_until(
        shadows, timeout, f"a shadow of {decision_id} stored", until=lambda r: bool(r.shadows)
    )


def scoregate_lineage(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "lineage", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def table_value(out: str, label: str) -> str:
    """The value of one line of ``lineage show``'s two-column table."""
    for line in out.splitlines():
        if line.startswith(label + "  "):
            return line[len(label) :].strip()
    raise AssertionError(f"no {label!r} line in:\n{out}")


def test_a_shadow_names_its_parent_and_the_parent_lists_it(stack: Stack) -> None:
    primary = score(stack, "card-fraud", seed=21)
    assert (primary.arm, primary.model_version) == ("primary", "1")

    [shadow] = wait_for_shadows(stack.lineage.address, primary.decision_id).shadows
    assert shadow.decision_id != primary.decision_id
    assert (shadow.arm, shadow.model_name, shadow.model_version) == ("shadow", "card-fraud", "2")
    assert (shadow.decision_point, shadow.entity_key) == ("card-fraud", "cust-21")

    record = get_decision(stack.lineage.address, shadow.decision_id)
    assert record.parent_decision_id == primary.decision_id
    assert record.route.arm == "shadow"
    assert (record.fallback_from, record.fallback_error) == ("", "")
    assert (record.outputs.score, record.outputs.decision) == (shadow.score, shadow.decision)

    parent = wait_for_decision(stack.lineage.address, primary.decision_id)
    assert parent.parent_decision_id == ""
    # A shadow is not mirrored in turn.
    assert list(list_shadows(stack.lineage.address, shadow.decision_id).shadows) == []


def test_scoregate_lineage_shows_the_link_both_ways(stack: Stack) -> None:
    primary = score(stack, "card-fraud", seed=22)
    [shadow] = wait_for_shadows(stack.lineage.address, primary.decision_id).shadows
    address = stack.lineage.address

    shown = scoregate_lineage("show", shadow.decision_id, "--lineage", address)
    assert shown.returncode == 0, shown.stderr
    assert table_value(shown.stdout, "shadow of") == primary.decision_id
    assert table_value(shown.stdout, "arm") == "shadow"
    assert "fallback from" not in shown.stdout
    as_json = scoregate_lineage(
        "show", shadow.decision_id, "--lineage", address, "--format", "json"
    )
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout)["parent_decision_id"] == primary.decision_id
    parent = scoregate_lineage("show", primary.decision_id, "--lineage", address)
    assert parent.returncode == 0, parent.stderr
    assert "shadow of" not in parent.stdout

    listed = scoregate_lineage("shadows", primary.decision_id, "--lineage", address)
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()
    assert header.split()[:4] == ["DECIDED", "AT", "DECISION", "ID"]
    assert shadow.decision_id in row and " shadow " in row and "card-fraud" in row
    listed_json = scoregate_lineage(
        "shadows", primary.decision_id, "--lineage", address, "--format", "json"
    )
    assert listed_json.returncode == 0, listed_json.stderr
    [entry] = json.loads(listed_json.stdout)["shadows"]
    assert (entry["decision_id"], entry["arm"], entry["model_version"]) == (
        shadow.decision_id,
        "shadow",
        "2",
    )
    csv_out = scoregate_lineage(
        "shadows", primary.decision_id, "--lineage", address, "--format", "csv"
    )
    assert csv_out.returncode == 0, csv_out.stderr
    assert csv_out.stdout.splitlines()[0].startswith("decided_at,decision_id,")
    assert shadow.decision_id in csv_out.stdout


def test_a_fallback_decision_keeps_what_failed_and_why(stack: Stack) -> None:
    answer = score(stack, "credit-risk", seed=23)
    assert (answer.arm, answer.fallback_reason) == ("fallback", "unavailable")
    assert answer.model_name == "credit-risk-rules"

    record = wait_for_decision(stack.lineage.address, answer.decision_id)
    assert record.route.arm == "fallback"
    assert record.route.fallback_reason == "unavailable"
    assert record.fallback_from == "credit-risk-v1"
    assert record.fallback_error  # the routed version's error, as the gateway saw it
    assert "credit-risk" in record.fallback_error
    assert len(record.fallback_error) <= 300
    assert record.parent_decision_id == ""

    address = stack.lineage.address
    shown = scoregate_lineage("show", answer.decision_id, "--lineage", address)
    assert shown.returncode == 0, shown.stderr
    assert table_value(shown.stdout, "arm") == "fallback (fallback: unavailable)"
    assert table_value(shown.stdout, "fallback from") == "credit-risk-v1"
    assert table_value(shown.stdout, "fallback error") == " ".join(record.fallback_error.split())
    assert "shadow of" not in shown.stdout
    as_json = scoregate_lineage(
        "show", answer.decision_id, "--lineage", address, "--format", "json"
    )
    assert as_json.returncode == 0, as_json.stderr
    data = json.loads(as_json.stdout)
    assert (data["fallback_from"], data["fallback_error"]) == (
        "credit-risk-v1",
        record.fallback_error,
    )

    # A stored decision without shadows: an empty listing, not NOT_FOUND.
    assert list(list_shadows(address, answer.decision_id).shadows) == []
    none = scoregate_lineage("shadows", answer.decision_id, "--lineage", address)
    assert none.returncode == 0, none.stderr
    assert f"no shadow decisions of {answer.decision_id}" in none.stdout


def test_shadows_of_an_unknown_or_malformed_id_are_refused(stack: Stack) -> None:
    missing = uuid7()
    with pytest.raises(grpc.RpcError) as info:
        list_shadows(stack.lineage.address, missing)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert missing in (info.value.details() or "")
    with pytest.raises(grpc.RpcError) as info:
        list_shadows(stack.lineage.address, "not-a-uuid")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    done = scoregate_lineage("shadows", missing, "--lineage", stack.lineage.address)
    assert done.returncode == 1
    assert missing in done.stderr and done.stdout == ""


def test_the_shadows_query_uses_the_parent_index(stack: Stack) -> None:
    """The store's own SQL, explained on the store's own database: an index search, no scan."""
    parent = uuid7()
    with raw_database(stack.db_url) as db:
        if db.postgres:
            db.execute("SET enable_seqscan = off")  # a tiny table is scanned whatever the indexes
            plan = "\n".join(
                r[0] for r in db.execute("EXPLAIN " + shadows_sql("postgresql"), (parent,))
            )
        else:
            rows = db.execute("EXPLAIN QUERY PLAN " + shadows_sql("sqlite"), (parent,))
            plan = "\n".join(str(r[-1]) for r in rows)
    assert "decisions_shadow_parent" in plan, plan
    assert "Seq Scan" not in plan and "SCAN decisions" not in plan, plan


async def _open(db_url: str, upto: int | None = None) -> LineageStore:
    store: LineageStore
    if db_url.startswith("postgres"):
        migrations = POSTGRES_MIGRATIONS if upto is None else POSTGRES_MIGRATIONS[:upto]
        store = PostgresLineageStore(db_url, migrations)
    else:
        migrations = SQLITE_MIGRATIONS if upto is None else SQLITE_MIGRATIONS[:upto]
        store = SqliteLineageStore(Path(db_url.removeprefix("sqlite:///")), migrations)
    await store.open()
    return store


async def test_shadows_stored_before_the_index_are_found_after_the_upgrade(
    db_url: str, make_record: MakeRecord
) -> None:
    parent = make_record()
    shadows = [
        make_record(
            arm="shadow",
            model_version="1",
            decided_at_us=parent.decided_at_us + n,
            extra={contract.PARENT_DECISION_ID: parent.decision_id},
        )
        for n in (2, 1)
    ]
    # A record that only claims a parent is not a shadow; a shadow of another decision is not ours.
    stray = make_record(extra={contract.PARENT_DECISION_ID: parent.decision_id})
    other = make_record(arm="shadow", extra={contract.PARENT_DECISION_ID: uuid7()})
    old = await _open(db_url, upto=SHADOW_PARENT_VERSION - 1)
    try:
        await old.insert_many([parent, *shadows, stray, other])
    finally:
        await old.close()

    store = await _open(db_url)
    try:
        assert await store.schema_version() >= SHADOW_PARENT_VERSION
        found = await store.list_shadows(parent.decision_id)
        assert found is not None
        assert [d.decision_id for d in found] == [s.decision_id for s in reversed(shadows)]
        assert {d.arm for d in found} == {"shadow"}
        # A shadow stored before its parent is listed; a decision with neither is None.
        orphan_parent = uuid7()
        orphan = make_record(arm="shadow", extra={contract.PARENT_DECISION_ID: orphan_parent})
        await store.insert_many([orphan])
        listed = await store.list_shadows(orphan_parent)
        assert [d.decision_id for d in listed or []] == [orphan.decision_id]
        assert await store.list_shadows(uuid7()) is None
        assert await store.list_shadows(stray.decision_id) == []
        verified = await store.verify([])
        assert verified.ok, verified.problem
    finally:
        await store.close()
