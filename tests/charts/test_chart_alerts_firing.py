"""The chart's alert rules evaluated by a real Prometheus against the real processes' metrics.

A runtime, a lineage store (drift recomputed every half second, its chain verified every
second) and a gateway with its outbox run on loopback; a Prometheus server scrapes the store's
and the gateway's /metrics every second and evaluates the rule groups of the rendered
PrometheusRule, with every ``for`` set to 0s through the chart's values. Traffic drawn from the
training distribution fires nothing; the same traffic with one feature shifted, sent to another
decision point, fires that feature's alert there alone; a shadow route's disagreement reaches
Prometheus as the pairs read back from the store say; every expression of the dashboard and the
rules parses and names only families these processes serve; a record edited in the database
fires the chain alert (issue 24, acceptance).
"""

from __future__ import annotations

import asyncio
import copy
import json
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from chart_support import render
from support.prometheus import PrometheusServer, prometheus_server, write_rule_file
from support.waiting import wait_until

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
from scoring.v1 import scoring_pb2_grpc
from scoring.v1.requests import score_request

STEADY = "credit-risk"
SHIFTED = "credit-risk-branch"
ROWS = 1_500
RULES = (
    "scorePsi",
    "featurePsi",
    "missingSpike",
    "fallbackShare",
    "errorRate",
    "outboxBacklog",
    "chainVerification",
)
VALUES = {
    "metrics": {
        "prometheusRule": {
            "enabled": True,
            "minDecisions": 500,
            **{name: {"for": "0s"} for name in RULES},
        }
    }
}


@dataclass
class Stack:
    prometheus: PrometheusServer
    gateway: ManagedProcess
    lineage: ManagedProcess
    db: Path
    workdir: Path


def _routes(config: dict[str, Any]) -> dict[str, Any]:
    # A second decision point on the same model: the branch whose applicants carry more debt.
    config["decision_points"][SHIFTED] = copy.deepcopy(config["decision_points"][STEADY])
    # card-fraud's challenger mirrors its champion.
    config["decision_points"]["card-fraud"]["shadows"] = [
        {"target": {"model": "card-fraud", "version": "challenger"}}
    ]
    return config


@pytest.fixture(scope="module")
def stack(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("alerts")
    processes: list[ManagedProcess] = []
    try:
        runtime = start_runtime(model_dir, workdir)
        processes.append(runtime)
        monitoring = ["--metrics-port", "0", "--metrics-refresh", "0.5", "--verify-interval", "1"]
        lineage = start_lineage(workdir / "lineage.db", workdir, extra_args=monitoring)
        processes.append(lineage)
        routes = workdir / "routes.yaml"
        config = _routes(demo_routes(load_manifests(model_dir), runtime.address))
        routes.write_text(yaml.safe_dump(config))
        gateway = start_gateway(
            routes,
            model_dir,
            workdir,
            lineage_endpoint=lineage.address,
            outbox_dir=workdir / "outbox",
            extra_args=["--metrics-port", str(free_port())],
        )
        processes.append(gateway)
        (rule,) = render(VALUES, "alerts-now").of_kind("PrometheusRule")
        rule_file = write_rule_file(workdir / "rules.yaml", rule)
        targets = {"lineage": lineage.info["metrics"], "gateway": gateway.info["metrics"]}
        with prometheus_server(workdir / "prometheus", targets, rule_file) as prometheus:
            wait_until(
                prometheus.targets_up,
                60,
                "Prometheus to scrape both targets",
                until=lambda health: health == {"lineage": "up", "gateway": "up"},
                interval_s=0.2,
            )
            yield Stack(prometheus, gateway, lineage, workdir / "lineage.db", workdir)
    finally:
        for process in reversed(processes):
            process.stop()


async def _send(address: str, point: str, rows: list[dict[str, Any]]) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = scoring_pb2_grpc.ScoringServiceStub(channel)
        limit = asyncio.Semaphore(32)

        async def one(i: int, row: dict[str, Any]) -> None:
            async with limit:
                request = score_request(f"{point}-{i}", point, f"cust-{i:05d}", row)
                await stub.Score(request, timeout=10)

        await asyncio.gather(*(one(i, r) for i, r in enumerate(rows)))


def _counted_by_prometheus(stack: Stack, point: str, decisions: int) -> None:
    """Waits until Prometheus holds the store's figures for ``decisions`` of ``point`` over
    the trailing day, then until every rule group has been evaluated on them."""
    expr = f'sum(scoregate_lineage_window_decisions{{decision_point="{point}", window="24h"}})'
    wait_until(
        lambda: stack.prometheus.query(expr),
        120,
        f"Prometheus to scrape {decisions} decisions of {point}",
        until=lambda samples: bool(samples) and samples[0][1] >= decisions,
        interval_s=0.5,
    )
    seen = time.time()

    def evaluated() -> list[float]:
        groups = stack.prometheus.api("/api/v1/rules")["groups"]
        return [_unix(g["lastEvaluation"]) for g in groups]

    wait_until(
        evaluated,
        60,
        "every rule group to be evaluated after the scrape",
        until=lambda times: len(times) == 3 and min(times) > seen + 1.0,
        interval_s=0.5,
    )


def _unix(rfc3339: str) -> float:
    from datetime import datetime

    # Prometheus writes nanoseconds; Python parses microseconds.
    head, _, tail = rfc3339.rstrip("Z").partition(".")
    fraction = (tail.split("+")[0].split("-")[0] + "000000")[:6]
    return datetime.fromisoformat(f"{head}.{fraction}+00:00").timestamp()


def _psi(stack: Stack, point: str) -> dict[str, float]:
    samples = stack.prometheus.query(
        f'scoregate_lineage_drift_psi{{decision_point="{point}", window="24h", arm="primary"}}'
    )
    return {labels["measure"]: value for labels, value in samples}


def _alerts(stack: Stack) -> list[dict[str, str]]:
    return stack.prometheus.alerts("firing") + stack.prometheus.alerts("pending")


async def test_traffic_like_training_fires_nothing(stack: Stack) -> None:
    await _send(stack.gateway.address, STEADY, sample_requests(STEADY, ROWS, seed=51))
    await asyncio.to_thread(_counted_by_prometheus, stack, STEADY, ROWS)
    psi = _psi(stack, STEADY)
    assert {"score", "debt_to_income"} <= set(psi)
    assert all(value < 0.1 for value in psi.values()), psi
    assert _alerts(stack) == []
    largest, value = max(psi.items(), key=lambda item: item[1])
    print(f"training-like traffic: largest PSI {value:.3f} ({largest})")
    # The chain was verified, and found intact, by the store itself.
    ((_, ok),) = stack.prometheus.query("scoregate_lineage_chain_verify_ok")
    assert ok == 1.0


async def test_a_shifted_feature_fires_its_alert_alone(stack: Stack) -> None:
    rows = sample_requests(STEADY, ROWS, seed=52)
    shifted = [{**r, "debt_to_income": float(r["debt_to_income"]) * 2.5} for r in rows]
    sent = time.monotonic()
    await _send(stack.gateway.address, SHIFTED, shifted)

    def feature_alerts() -> list[dict[str, str]]:
        return [
            a
            for a in stack.prometheus.alerts("firing")
            if a["alertname"] == "ScoregateFeaturePsiHigh"
        ]

    (alert,) = await asyncio.to_thread(
        wait_until, feature_alerts, 120, "the feature PSI alert to fire", interval_s=0.5
    )
    took = time.monotonic() - sent
    assert (alert["decision_point"], alert["measure"]) == (SHIFTED, "debt_to_income")
    assert alert["severity"] == "warning" and alert["window"] == "24h"
    await asyncio.to_thread(_counted_by_prometheus, stack, SHIFTED, ROWS)
    moved = _psi(stack, SHIFTED)
    assert moved["debt_to_income"] > 0.25
    assert all(v < 0.1 for k, v in moved.items() if k not in ("debt_to_income", "score")), moved
    # Nothing else: the score may follow its input past the rule, on that decision point only.
    others = [a for a in _alerts(stack) if a != alert]
    assert all(
        a["alertname"] == "ScoregateScorePsiHigh" and a["decision_point"] == SHIFTED for a in others
    ), others
    assert all(v < 0.1 for v in _psi(stack, STEADY).values())
    print(
        f"feature alert firing {took:.1f} s after the first shifted request was sent; "
        f"PSI debt_to_income {moved['debt_to_income']:.3f}, score {moved['score']:.3f}"
    )


async def test_shadow_disagreement_reaches_prometheus(stack: Stack) -> None:
    """The rate Prometheus holds is the share of pairs, read back one by one from the store,
    whose shadow decided otherwise than the decision the caller got."""
    from lineage.v1 import lineage_pb2, lineage_pb2_grpc

    rows = sample_requests("card-fraud", 600, seed=53)
    async with grpc.aio.insecure_channel(stack.gateway.address) as channel:
        stub = scoring_pb2_grpc.ScoringServiceStub(channel)
        answers = await asyncio.gather(
            *(
                stub.Score(score_request(f"cf-{i}", "card-fraud", f"acct-{i:05d}", r), timeout=10)
                for i, r in enumerate(rows)
            )
        )
    async with grpc.aio.insecure_channel(stack.lineage.address) as channel:
        lineage = lineage_pb2_grpc.LineageServiceStub(channel)

        async def pair(answer: Any) -> tuple[str, str] | None:
            request = lineage_pb2.ListShadowsRequest(decision_id=answer.decision_id)
            for _ in range(200):
                try:
                    shadows = (await lineage.ListShadows(request, timeout=10)).shadows
                except grpc.aio.AioRpcError as e:
                    # Neither half stored yet: the outbox is still delivering.
                    if e.code() != grpc.StatusCode.NOT_FOUND:
                        raise
                    shadows = []
                if shadows:
                    return answer.decision, shadows[0].decision
                await asyncio.sleep(0.1)
            return None  # a mirror the gateway dropped at its bound

        found = [p for p in await asyncio.gather(*(pair(a) for a in answers)) if p]
    assert len(found) > 500
    expected = sum(primary != shadow for primary, shadow in found) / len(found)
    point = 'decision_point="card-fraud", window="24h"'

    def pairs() -> list[tuple[dict[str, str], float]]:
        return stack.prometheus.query(f"scoregate_lineage_shadow_pairs{{{point}}}")

    ((labels, _),) = await asyncio.to_thread(
        wait_until,
        pairs,
        60,
        "Prometheus to hold every pair",
        until=lambda s: len(s) == 1 and s[0][1] == len(found),
        interval_s=0.5,
    )
    assert (labels["version"], labels["parent_version"], labels["arm"]) == ("2", "1", "shadow")
    ((_, rate),) = stack.prometheus.query(f"scoregate_lineage_shadow_disagreement_rate{{{point}}}")
    assert rate == pytest.approx(expected, abs=1e-9)
    print(f"shadow pairs {len(found)}, disagreement {rate:.3f}")

    # The same figures from GetDrift through the CLI (JSON, CSV, table) and in the report.
    differ = sum(primary != shadow for primary, shadow in found)
    reply = json.loads(
        await _cli("drift", "--point", "card-fraud", "--format", "json", stack=stack)
    )
    (shadow_arm,) = [a for w in reply["windows"] for a in w["arms"] if a["arm"] == "shadow"]
    (pairs_json,) = shadow_arm["shadow_pairs"]
    assert (int(pairs_json["pairs"]), int(pairs_json.get("disagreements", 0))) == (
        len(found),
        differ,
    )
    csv = await _cli("drift", "--point", "card-fraud", "--format", "csv", "--pairs", stack=stack)
    header, row = csv.strip().splitlines()
    assert header.startswith("window_start,model,version,arm,parent_model,parent_version,pairs")
    assert f",shadow,card-fraud,1,{len(found)},{differ}," in row
    assert "DISAGREEMENT RATE" in await _cli("drift", "--point", "card-fraud", stack=stack)
    out = stack.workdir / "card-fraud.html"
    await _cli("report", "--point", "card-fraud", "--out", str(out), stack=stack)
    assert f"{len(found):,} pairs, {differ:,} decided otherwise" in out.read_text()


async def _cli(*args: str, stack: Stack) -> str:
    import sys

    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "governance.cli", *args, "--lineage", stack.lineage.address,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await process.communicate()
    assert process.returncode == 0, out.decode()
    return out.decode()


def _exported_names(text: str) -> set[str]:
    """The series names a /metrics page can carry, from its families (with or without
    samples yet): a counter's ``_total``, a histogram's ``_bucket``, ``_sum`` and ``_count``."""
    from prometheus_client.parser import text_string_to_metric_families

    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
        names.update(family.name + s for s in suffixes.get(family.type, ("",)))
    return names


def test_dashboard_and_rules_name_only_exported_families(stack: Stack) -> None:
    """Every PromQL expression of the dashboard and the rules parses (promtool) and every
    scoregate family it names is one the real store or gateway serves."""
    import json
    import re
    import urllib.request

    from chart_support import CHART_DIR
    from support.prometheus import promtool

    exported: set[str] = set()
    for target in (stack.lineage.info["metrics"], stack.gateway.info["metrics"]):
        with urllib.request.urlopen(f"http://{target}/metrics", timeout=10) as reply:
            exported |= _exported_names(reply.read().decode())
    dashboard = json.loads((CHART_DIR / "dashboards" / "scoregate.json").read_text())
    expressions = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    (rule,) = render(VALUES, "alerts-now").of_kind("PrometheusRule")
    expressions += [r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]]
    # Grafana's variables, as Grafana substitutes them before the query is sent.
    grafana = {"$__rate_interval": "1m", "$namespace": "scoring"}
    parsed = []
    for expr in expressions:
        for variable, value in grafana.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, expr
        parsed.append(expr)
        named = set(re.findall(r"\bscoregate_[a-z0-9_]+", expr))
        assert named, expr
        assert named <= exported, (expr, named - exported)
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"scoregate:dashboard:{i}", "expr": e} for i, e in enumerate(parsed)
    ]}]}  # fmt: skip
    path = stack.workdir / "dashboard-rules.yaml"
    path.write_text(yaml.safe_dump(rules))
    checked = promtool("check", "rules", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_an_edited_record_fires_the_chain_alert(stack: Stack) -> None:
    """Last in the module: it breaks the store's chain on purpose."""
    with sqlite3.connect(stack.db) as db:
        edited = db.execute(
            "UPDATE decisions SET decision = 'approve', score = 0.01 "
            "WHERE decision_id = (SELECT decision_id FROM decisions WHERE decision <> 'approve' "
            "ORDER BY seq LIMIT 1)"
        ).rowcount
    assert edited == 1

    def chain_alerts() -> list[dict[str, str]]:
        return [
            a
            for a in stack.prometheus.alerts("firing")
            if a["alertname"] == "ScoregateChainVerificationFailed"
        ]

    (alert,) = wait_until(chain_alerts, 120, "the chain alert to fire", interval_s=0.5)
    assert alert["severity"] == "critical"
