"""Optional features, end to end on real processes: a request may leave out a feature the
manifest declares optional; the model is given what the manifest says (card-fraud's distance
from home as the graph's missing value, credit-risk's credit history as its declared default),
the decision record stores the feature as absent, and replay reproduces the score."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path

import grpc
import numpy as np
import pytest
from support.stored import get_when_stored

from governance.replay import replay
from lineage.v1 import lineage_pb2_grpc
from loadtests.local.topology import Topology
from runtimes.graph import BYTES, input_specs, open_session, run_rows
from runtimes.manifest import Manifest, absent_value, load_manifests
from runtimes.training.datasets import FeatureValue, sample_requests
from scoring.v1 import scoring_pb2, scoring_pb2_grpc
from scoring.v1.requests import score_batch_request, score_request

DISTANCE = "distance_from_home_km"
HISTORY = "credit_history_months"


def in_process_score(model_dir: Path, m: Manifest, row: Mapping[str, FeatureValue]) -> float:
    """The score onnxruntime gives the row in this process, absent features as the manifest
    says they reach the model."""
    session = open_session(str(model_dir / m.name / m.version / m.artifact))
    feed = {}
    for spec, feature in zip(input_specs(m.features), m.features, strict=True):
        value = row.get(spec.name, absent_value(feature))
        if spec.datatype == BYTES:
            feed[spec.name] = np.array([[str(value)]], dtype=object)
        else:
            feed[spec.name] = np.array([[float(value)]], dtype=np.float32)
    (probabilities,) = run_rows(session, ["probabilities"], feed)
    return float(probabilities[0, m.outputs.positive_class_index])


@pytest.mark.parametrize("version", ["1", "2"])
async def test_a_transaction_without_a_distance_is_scored_by_the_model_as_missing(
    topology: Topology,
    scoring: scoring_pb2_grpc.ScoringServiceStub,
    lineage: lineage_pb2_grpc.LineageServiceStub,
    version: str,
) -> None:
    m = load_manifests(topology.model_dir)[("card-fraud", version)]
    assert next(f for f in m.features if f.name == DISTANCE).absent == "missing"
    row = sample_requests("card-fraud", 1, seed=41)[0]
    del row[DISTANCE]
    answer = await scoring.Score(
        score_request(f"opt-{version}", "card-fraud", "acct-o", row, version), timeout=10
    )
    assert (answer.arm, answer.fallback_reason) == ("pinned", "")
    assert answer.model_version == version
    assert answer.score == in_process_score(topology.model_dir, m, row)
    # Missing is not the same as any value: the graph routes it its own way.
    assert answer.score != in_process_score(topology.model_dir, m, {**row, DISTANCE: 0.0})

    record = await get_when_stored(lineage, answer.decision_id)
    assert DISTANCE not in record.inputs.features
    assert set(record.inputs.features) == set(row)
    assert replay(record, topology.model_dir).match


async def test_an_application_without_a_credit_history_is_scored_with_its_declared_default(
    topology: Topology,
    scoring: scoring_pb2_grpc.ScoringServiceStub,
    lineage: lineage_pb2_grpc.LineageServiceStub,
) -> None:
    m = load_manifests(topology.model_dir)[("credit-risk", "1")]
    history = next(f for f in m.features if f.name == HISTORY)
    assert (history.absent, history.default) == ("default", 0.0)
    full = sample_requests("credit-risk", 1, seed=42)[0]
    row = {k: v for k, v in full.items() if k != HISTORY}
    without = await scoring.Score(score_request("opt-h", "credit-risk", "app-1", row), timeout=10)
    with_default = await scoring.Score(
        score_request("opt-h0", "credit-risk", "app-1", {**row, HISTORY: 0.0}), timeout=10
    )
    assert without.fallback_reason == "" and without.arm == "primary"
    assert without.score == with_default.score == in_process_score(topology.model_dir, m, row)

    record = await get_when_stored(lineage, without.decision_id)
    assert HISTORY not in record.inputs.features  # stored as absent, not as the default
    assert HISTORY in (await get_when_stored(lineage, with_default.decision_id)).inputs.features
    assert replay(record, topology.model_dir).match


async def test_rows_with_and_without_optional_features_in_flight_together_are_all_scored(
    topology: Topology,
    scoring: scoring_pb2_grpc.ScoringServiceStub,
    lineage: lineage_pb2_grpc.LineageServiceStub,
) -> None:
    """Concurrent callers' rows share micro-batches, and one ScoreBatch mixes them: every row,
    absent features or not, gets the model's score for exactly its own inputs."""
    m = load_manifests(topology.model_dir)[("card-fraud", "1")]
    rows = sample_requests("card-fraud", 200, seed=43, absent=True)
    lacking = sum(DISTANCE not in r for r in rows)
    assert 10 <= lacking <= 60  # as often as in training: 30% of e-commerce transactions
    slots = asyncio.Semaphore(32)

    async def one(i: int) -> scoring_pb2.ScoreResponse:
        async with slots:
            request = score_request(f"mix-{i}", "card-fraud", f"acct-{i}", rows[i], "1")
            return await scoring.Score(request, timeout=10)

    answers = await asyncio.gather(*(one(i) for i in range(100)))
    batch = await scoring.ScoreBatch(
        score_batch_request(
            "card-fraud", [(f"mixb-{i}", f"b{i}", r) for i, r in enumerate(rows[100:])], "1"
        ),
        timeout=30,
    )
    answers += [r.decision for r in batch.results]
    assert all(a.arm == "pinned" and not a.fallback_reason for a in answers)
    assert [a.score for a in answers] == [in_process_score(topology.model_dir, m, r) for r in rows]
    for a, row in zip(answers[::20], rows[::20], strict=True):
        record = await get_when_stored(lineage, a.decision_id)
        assert set(record.inputs.features) == set(row)
        assert replay(record, topology.model_dir).match


async def test_a_required_feature_left_out_is_still_refused_naming_it(
    scoring: scoring_pb2_grpc.ScoringServiceStub,
) -> None:
    row = sample_requests("card-fraud", 1, seed=44)[0]
    del row["amount"]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await scoring.Score(score_request("opt-r", "card-fraud", "acct-r", row), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "features.amount" in (caught.value.details() or "")
