"""Drift through the real gateway, runtime and lineage store: what the risk team asks of
``scoregate lineage drift`` after real traffic, with a shifted input on one decision point and
a canary on another (issue 24)."""

from __future__ import annotations

import asyncio
import copy
import json
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from support.stored import get_when_stored

from loadtests.local.routes import with_canary
from loadtests.local.topology import Topology
from runtimes.training.datasets import sample_requests
from scoring.v1 import scoring_pb2_grpc
from scoring.v1.requests import score_request

SHIFTED = "credit-risk-branch"


def _routes(routes: dict[str, Any]) -> dict[str, Any]:
    out = with_canary(0.5)(routes)
    # A second decision point on the same model: its branch's applicants carry more debt.
    out["decision_points"][SHIFTED] = copy.deepcopy(out["decision_points"]["credit-risk"])
    return out


@pytest.fixture(scope="module")
def drifted(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    topo = Topology(
        tmp_path_factory.mktemp("drift"),
        model_dir,
        routes=_routes,
        metrics_refresh_s=0.2,
        lineage_args=["--adverse-outcomes", "churn=left"],
    ).start()
    try:
        yield topo
    finally:
        topo.stop()


async def _send(address: str, point: str, rows: list[dict[str, Any]]) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = scoring_pb2_grpc.ScoringServiceStub(channel)
        limit = asyncio.Semaphore(32)

        async def one(i: int, row: dict[str, Any]) -> None:
            async with limit:
                request = score_request(f"{point}-{i}", point, f"cust-{i:05d}", row)
                await stub.Score(request, timeout=10)

        await asyncio.gather(*(one(i, r) for i, r in enumerate(rows)))


async def _drift(topology: Topology, point: str, expected: int) -> dict[str, Any]:
    """The CLI's JSON once the store has counted ``expected`` decisions of ``point``."""
    for _ in range(100):
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "governance.cli", "drift", "--point", point,
            "--lineage", topology.lineage.address, "--format", "json",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await process.communicate()
        assert process.returncode == 0, out.decode()
        reply = json.loads(out)
        counted = sum(int(a.get("decisions", 0)) for w in reply["windows"] for a in w["arms"])
        if counted >= expected:
            return reply
        await asyncio.sleep(0.2)
    raise AssertionError(f"the store counted {counted} of {expected} decisions of {point}")


def _measures(reply: dict[str, Any], arm: str = "primary") -> dict[str, dict[str, Any]]:
    arms = [a for w in reply["windows"] for a in w["arms"] if a["arm"] == arm]
    assert len(arms) == 1, arms
    return {m["measure"]: m for m in [arms[0]["score"], *arms[0]["features"]]}


async def test_a_shifted_input_is_significant_only_where_it_was_sent(drifted: Topology) -> None:
    rows = sample_requests("credit-risk", 1_500, seed=41)
    shifted = [{**r, "debt_to_income": float(r["debt_to_income"]) * 2.5} for r in rows]
    gateway = drifted.gateway.address
    await _send(gateway, "credit-risk", rows)
    await _send(gateway, SHIFTED, shifted)

    steady = _measures(await _drift(drifted, "credit-risk", 1_500))
    moved = _measures(await _drift(drifted, SHIFTED, 1_500))
    for name, m in steady.items():
        assert m["psi"] < 0.1, (name, m)
        assert m["band"] == "stable"
    assert moved["debt_to_income"]["psi"] > 0.25
    assert moved["debt_to_income"]["band"] == "significant"
    assert all(
        m["psi"] < 0.1 for name, m in moved.items() if name not in ("debt_to_income", "score")
    )
    # The model saw riskier applicants: its score moved too.
    assert moved["score"]["psi"] > steady["score"]["psi"]


async def test_a_canary_is_compared_with_the_primary_on_the_same_window(
    drifted: Topology,
) -> None:
    rows = sample_requests("card-fraud", 1_200, seed=42)
    await _send(drifted.gateway.address, "card-fraud", rows)
    reply = await _drift(drifted, "card-fraud", 1_200)
    arms = {a["arm"]: a for w in reply["windows"] for a in w["arms"]}
    assert set(arms) == {"primary", "canary"}
    assert arms["primary"]["model_version"] != arms["canary"]["model_version"]
    # Half the entities each (sticky by entity key).
    assert 400 < int(arms["canary"]["decisions"]) < 800
    canary_psi = arms["canary"]["score_psi_vs_primary"]
    assert isinstance(canary_psi, float) and canary_psi >= 0.0
    assert arms["primary"]["score_psi_vs_primary"] == "NaN"


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as reply:
        return str(reply.read().decode())


def _samples(text: str, family: str) -> list[tuple[dict[str, str], float]]:
    from prometheus_client.parser import text_string_to_metric_families

    for f in text_string_to_metric_families(text):
        if f.name == family:
            return [(s.labels, s.value) for s in f.samples]
    return []


async def test_the_store_exports_the_drift_for_prometheus(drifted: Topology) -> None:
    """What the alert rules read (docs/monitoring.md): the trailing day's PSI per feature."""
    address = drifted.lineage.info["metrics"]
    rows = sample_requests("credit-risk", 600, seed=43)
    await _send(
        drifted.gateway.address,
        SHIFTED,
        [{**r, "debt_to_income": float(r["debt_to_income"]) * 2.5} for r in rows],
    )
    psi: dict[str, float] = {}
    for _ in range(100):
        text = await asyncio.to_thread(_scrape, f"http://{address}/metrics")
        psi = {
            labels["measure"]: value
            for labels, value in _samples(text, "scoregate_lineage_drift_psi")
            if labels["decision_point"] == SHIFTED and labels["window"] == "24h"
        }
        if psi:
            break
        await asyncio.sleep(0.2)
    assert psi["debt_to_income"] > 0.25
    assert all(v < 0.1 for k, v in psi.items() if k not in ("debt_to_income", "score"))
    shares = _samples(text, "scoregate_lineage_decision_share")
    assert any(labels["decision_point"] == "credit-risk" for labels, _ in shares)


async def test_outcomes_give_the_auc_computed_independently(drifted: Topology) -> None:
    """Outcomes recorded against real decisions: the store's AUC and KS per version equal
    scikit-learn's and scipy's on the same (score, outcome) pairs, and a period with few labels
    says so."""
    import random

    from scipy import stats
    from sklearn.metrics import roc_auc_score

    from lineage.v1 import lineage_pb2, lineage_pb2_grpc

    rows = sample_requests("churn", 600, seed=44)
    async with grpc.aio.insecure_channel(drifted.gateway.address) as channel:
        stub = scoring_pb2_grpc.ScoringServiceStub(channel)
        answers = await asyncio.gather(
            *(
                stub.Score(score_request(f"churn-{i}", "churn", f"cust-{i:05d}", r), timeout=10)
                for i, r in enumerate(rows)
            )
        )
    chance = random.Random(5)
    labels = {a.decision_id: "left" if chance.random() < a.score else "stayed" for a in answers}
    async with grpc.aio.insecure_channel(drifted.lineage.address) as channel:
        lineage = lineage_pb2_grpc.LineageServiceStub(channel)
        for a in answers:
            await get_when_stored(lineage, a.decision_id)
        for i, (decision_id, label) in enumerate(labels.items()):
            outcome = lineage_pb2.Outcome(
                outcome_id=f"o-{i}", decision_id=decision_id, label=label, source="crm"
            )
            outcome.at.GetCurrentTime()
            await lineage.RecordOutcome(lineage_pb2.RecordOutcomeRequest(outcome=outcome))
        request = lineage_pb2.GetPerformanceRequest(decision_point="churn", bad_labels=["left"])
        request.since.FromSeconds(0)
        reply = await lineage.GetPerformance(request, timeout=10)
        (version,) = reply.versions
        scores = [a.score for a in answers]
        bad = [labels[a.decision_id] == "left" for a in answers]
        assert version.labelled == 600 and version.bad == sum(bad)
        assert version.auc == pytest.approx(roc_auc_score(bad, scores), abs=1e-12)
        ks = stats.ks_2samp(
            [s for s, b in zip(scores, bad, strict=True) if b],
            [s for s, b in zip(scores, bad, strict=True) if not b],
        )
        assert version.ks == pytest.approx(ks.statistic, abs=1e-12)
        assert version.enough_labels
        assert sum(b.labelled for b in version.bands) == 600
        # The same AUC on the store's /metrics, for the alert rules and the dashboard.
        at = f'decision_point="churn",model="churn",version="{version.model_version}"'
        deadline = time.monotonic() + 20
        while True:
            text = await asyncio.to_thread(
                _scrape, f"http://{drifted.lineage.info['metrics']}/metrics"
            )
            exported = {
                line.split("{")[0]: float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("scoregate_lineage_") and at in line and 'window="90d"' in line
            }
            if exported.get("scoregate_lineage_labelled_decisions") == 600:
                break
            assert time.monotonic() < deadline, exported
            await asyncio.sleep(0.2)
        assert exported["scoregate_lineage_auc"] == pytest.approx(version.auc, abs=1e-9)
        assert exported["scoregate_lineage_ks"] == pytest.approx(version.ks, abs=1e-9)
        assert exported["scoregate_lineage_labels_enough"] == 1.0
        # A later outcome replaces an earlier one: a customer who stayed, then left.
        stayed = next(d for d, label in labels.items() if label == "stayed")
        later = lineage_pb2.Outcome(
            outcome_id="o-later", decision_id=stayed, label="left", source="crm"
        )
        later.at.GetCurrentTime()
        later.at.seconds += 60
        await lineage.RecordOutcome(lineage_pb2.RecordOutcomeRequest(outcome=later))
        (again,) = (await lineage.GetPerformance(request, timeout=10)).versions
        assert (again.labelled, again.bad) == (600, version.bad + 1)
        # No outcome with the adverse label: the figures are flagged as saying little.
        request.bad_labels[:] = ["no-such-label"]
        (none,) = (await lineage.GetPerformance(request, timeout=10)).versions
        assert none.bad == 0 and not none.enough_labels


async def test_the_report_is_one_html_file_with_its_plots(
    drifted: Topology, tmp_path: Path
) -> None:
    rows = sample_requests("credit-risk", 400, seed=45)
    await _send(
        drifted.gateway.address,
        SHIFTED,
        [{**r, "debt_to_income": float(r["debt_to_income"]) * 2.5} for r in rows],
    )
    await _drift(drifted, SHIFTED, 400)
    out = tmp_path / "report.html"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "governance.cli", "report", "--point", SHIFTED,
        "--lineage", drifted.lineage.address, "--out", str(out), "--bad", "default",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    printed, _ = await process.communicate()
    assert process.returncode == 0, printed.decode()
    page = out.read_text()
    assert page.startswith("<!doctype html>") and f"Model monitoring report: {SHIFTED}" in page
    assert "<tr class='significant'><td>debt_to_income</td>" in page
    # PSI over time and the drifted feature's distribution, as embedded images: no file beside.
    assert page.count('<img alt="" src="data:image/png;base64,') >= 3
    assert 'src="http' not in page and "<script" not in page
    assert "No decision of the period has a recorded outcome." in page
