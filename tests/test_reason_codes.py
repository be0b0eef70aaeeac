"""Principal reasons through the real runtime, gateway and lineage store processes (issue 22).

What a credit officer checks on an adverse-action notice: a declined application carries one to
four reasons, principal first, each a code and statement of the catalogue version recorded with
the decision, describing features that actually pushed the score up; the lineage store returns
the same reasons for the same decision.
"""

from __future__ import annotations

import asyncio
import copy
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from support.stored import get_when_stored

from governance.replay import replay
from lineage.v1 import lineage_pb2_grpc
from loadtests.local.topology import Topology
from runtimes.manifest import Manifest, find_model_folders, read_manifest
from runtimes.reasons import ReasonCatalogue, read_catalogue
from runtimes.training.datasets import sample_requests
from scoring.v1 import scoring_pb2, scoring_pb2_grpc
from scoring.v1.requests import score_batch_request, score_request


def _model(topology: Topology, name: str) -> tuple[Manifest, ReasonCatalogue]:
    for folder in find_model_folders(topology.model_dir):
        manifest = read_manifest(folder)
        if manifest.name == name and manifest.version == "1":
            return manifest, read_catalogue(folder, manifest, manifest.reason_catalogue_sha256)
    raise AssertionError(f"no {name} v1 in {topology.model_dir}")


async def _score_many(
    scoring: scoring_pb2_grpc.ScoringServiceStub, point: str, n: int, seed: int
) -> list[scoring_pb2.ScoreResponse]:
    rows = sample_requests(point, n, seed=seed)
    calls = [
        scoring.Score(score_request(f"{point}-{i}", point, f"cust-{i}", row), timeout=10)
        for i, row in enumerate(rows)
    ]
    return list(await asyncio.gather(*calls))


async def test_a_declined_credit_application_gets_its_principal_reasons(
    topology: Topology,
    scoring: scoring_pb2_grpc.ScoringServiceStub,
    lineage: lineage_pb2_grpc.LineageServiceStub,
) -> None:
    manifest, catalogue = _model(topology, "credit-risk")
    statements = {e.code: e.statement for e in catalogue.reasons}
    features = {e.code: e.feature for e in catalogue.reasons}
    # Concurrent calls, so micro-batched rows are among them.
    responses = await _score_many(scoring, "credit-risk", 300, seed=22)
    declined = [r for r in responses if r.decision == "decline"]
    approved = [r for r in responses if r.decision == "approve"]
    assert declined and approved, "the sample has both outcomes"

    for response in declined:
        reasons = list(response.reason_codes)
        assert 1 <= len(reasons) <= 4
        assert [r.rank for r in reasons] == list(range(1, len(reasons) + 1))
        assert len({r.code for r in reasons}) == len(reasons)
        for r in reasons:
            assert statements[r.code] == r.description
        assert response.reason_catalogue_version == catalogue.catalogue_version
    # By default approvals carry none.
    assert all(not r.reason_codes for r in approved)

    for response in declined[:20]:
        record = await get_when_stored(lineage, response.decision_id)
        stored = sorted(record.outputs.reasons, key=lambda r: r.rank)
        assert [(r.code, r.description, r.rank) for r in stored] == [
            (r.code, r.description, r.rank) for r in response.reason_codes
        ]
        assert record.outputs.reason_catalogue_version == catalogue.catalogue_version
        # Each reason is a feature that pushed towards default, largest first.
        pushes = [r.contribution for r in stored]
        assert all(p > 0 for p in pushes) and pushes == sorted(pushes, reverse=True)
        assert all(features[r.code] == r.feature for r in stored)
        assert manifest.name == record.model.name
        # Replay re-derives the contributions and the reasons from the artifact, bit for bit.
        replayed = replay(record, topology.model_dir)
        assert replayed.reasons is not None and not replayed.reason_differences
        assert replayed.match, replayed

    # And as a risk officer runs it.
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "governance.cli", "replay", declined[0].decision_id,
        "--lineage", topology.lineage.address, "--model-dir", str(topology.model_dir),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(process.communicate(), timeout=120)
    printed = out.decode()
    assert process.returncode == 0, printed
    assert "MATCH: the replayed score, contributions and reasons" in printed
    assert declined[0].reason_codes[0].code in printed


async def test_reasons_match_the_contributions_of_the_served_artifact(
    topology: Topology,
    scoring: scoring_pb2_grpc.ScoringServiceStub,
    lineage: lineage_pb2_grpc.LineageServiceStub,
) -> None:
    """The recorded contributions are the artifact's own: recomputed here from the ONNX file,
    they sum with the base value to the score's log-odds, and the principal reason is the
    largest positive one."""
    manifest, _ = _model(topology, "credit-risk")
    responses = await _score_many(scoring, "credit-risk", 60, seed=5)
    declined = [r for r in responses if r.reason_codes][:10]
    assert declined
    for response in declined:
        record = await get_when_stored(lineage, response.decision_id)
        contributions = dict(record.outputs.contributions)
        assert set(contributions) == {f.name for f in manifest.features}
        margin = sum(contributions.values()) + record.outputs.contributions_base
        score = record.outputs.score
        assert margin == pytest.approx(math.log(score / (1 - score)), abs=1e-4)
        principal = max(contributions, key=lambda k: contributions[k])
        assert response.reason_codes[0].rank == 1
        assert record.outputs.reasons[0].feature == principal


async def test_score_batch_rows_get_their_own_reasons(
    topology: Topology, scoring: scoring_pb2_grpc.ScoringServiceStub
) -> None:
    rows = sample_requests("credit-risk", 200, seed=9)
    batch = score_batch_request(
        "credit-risk",
        [(f"batch-{i}", f"cust-{i}", row) for i, row in enumerate(rows)],
    )
    answer = await scoring.ScoreBatch(batch, timeout=10)
    singles = await asyncio.gather(
        *(
            scoring.Score(score_request(f"one-{i}", "credit-risk", f"cust-{i}", row), timeout=10)
            for i, row in enumerate(rows)
        )
    )
    results = list(answer.results)
    assert len(results) == len(rows)
    with_reasons = 0
    for result, single in zip(results, singles, strict=True):
        got = result.decision
        assert got.decision == single.decision
        # A row's reasons are its own, whether scored alone or among 200.
        assert [(r.code, r.rank) for r in got.reason_codes] == [
            (r.code, r.rank) for r in single.reason_codes
        ]
        with_reasons += bool(got.reason_codes)
    assert with_reasons > 0


async def test_every_demo_decision_point_gives_reasons_for_adverse_decisions(
    topology: Topology, scoring: scoring_pb2_grpc.ScoringServiceStub
) -> None:
    for point in ("card-fraud", "churn"):
        _, catalogue = _model(topology, point)
        codes = {e.code for e in catalogue.reasons}
        responses = await _score_many(scoring, point, 300, seed=3)
        adverse = [r for r in responses if r.reason_codes]
        assert adverse, f"{point}: no decision with reasons in 300"
        for r in adverse:
            assert {c.code for c in r.reason_codes} <= codes
            assert r.reason_catalogue_version == catalogue.catalogue_version


def _configured(routes: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(routes)
    points = out["decision_points"]
    points["credit-risk"]["reasons"] = {"max_reasons": 2, "for_approvals": True}
    points["card-fraud"]["reasons"] = {"max_reasons": 0}
    return out


@pytest.fixture(scope="module")
def configured(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    topo = Topology(tmp_path_factory.mktemp("reasons"), model_dir, routes=_configured).start()
    try:
        yield topo
    finally:
        topo.stop()


async def test_each_decision_point_sets_how_many_reasons_and_for_which_decisions(
    configured: Topology,
) -> None:
    async with (
        grpc.aio.insecure_channel(configured.gateway.address) as channel,
        grpc.aio.insecure_channel(configured.lineage.address) as store,
    ):
        scoring = scoring_pb2_grpc.ScoringServiceStub(channel)
        lineage = lineage_pb2_grpc.LineageServiceStub(store)
        credit = await _score_many(scoring, "credit-risk", 200, seed=22)
        assert all(1 <= len(r.reason_codes) <= 2 for r in credit if r.decision == "decline")
        approvals = [r for r in credit if r.decision == "approve"]
        assert approvals and any(r.reason_codes for r in approvals)
        assert max(len(r.reason_codes) for r in credit) == 2

        fraud = await _score_many(scoring, "card-fraud", 200, seed=3)
        assert any(r.decision != "approve" for r in fraud)
        assert all(not r.reason_codes and not r.reason_catalogue_version for r in fraud)
        # Off means off: the runtime was not asked, so no contributions were recorded.
        record = await get_when_stored(lineage, fraud[0].decision_id)
        assert not record.outputs.contributions
