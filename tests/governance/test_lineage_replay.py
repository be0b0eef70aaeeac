"""Demo decisions made by the real gateway and runtime replay bit for bit; the manifests they
name are registered and resolve from the decision."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from pathlib import Path

import grpc
import onnxruntime as ort
from lineage_support import MakeRecord, get_decision, send_with_otel_sdk, wait_for_decision
from test_lineage_cli import lineage_cli

from governance.replay import replay
from lineage.v1 import lineage_pb2, lineage_pb2_grpc
from lineage.v1.record import SCORING_ENVIRONMENT, features_sha256
from loadtests.local.topology import Topology
from runtimes.graph import parse_environment, scoring_environment
from runtimes.manifest import load_manifests
from runtimes.training.datasets import sample_requests
from scoring.v1 import scoring_pb2_grpc
from scoring.v1.requests import score_batch_request, score_request


def score_demo_requests(gateway: str, n: int) -> list[str]:
    ids = []
    with grpc.insecure_channel(gateway) as channel:
        stub = scoring_pb2_grpc.ScoringServiceStub(channel)
        for point, seed in (("card-fraud", 7), ("credit-risk", 8)):
            for features in sample_requests(point, n, seed):
                request = score_request(f"req-{uuid.uuid4().hex}", point, "acct-1", features)
                ids.append(stub.Score(request, timeout=10).decision_id)
    return ids


def test_demo_decisions_replay_bit_for_bit(topology: Topology, model_dir: Path) -> None:
    lineage = topology.lineage.address
    registered = lineage_cli("register-models", "--lineage", lineage, "--model-dir", str(model_dir))
    assert registered.returncode == 0, registered.stderr
    assert registered.stdout.count(" registered") == len(load_manifests(model_dir))

    ids = score_demo_requests(topology.gateway.address, 4)
    for decision_id in ids:
        wait_for_decision(lineage, decision_id, timeout=30)
    for decision_id in ids[:2] + ids[-2:]:
        done = lineage_cli(
            "replay", decision_id, "--lineage", lineage, "--model-dir", str(model_dir)
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "MATCH" in done.stdout

    record = get_decision(lineage, ids[0])
    with grpc.insecure_channel(lineage) as channel:
        model = lineage_pb2_grpc.LineageServiceStub(channel).GetModel(
            lineage_pb2.GetModelRequest(artifact_sha256=record.model.artifact_sha256), timeout=5
        )
    assert (model.name, model.version) == (record.model.name, record.model.version)
    shown = lineage_cli("show", ids[0], "--lineage", lineage)
    assert f"{model.name} v{model.version}, registered" in shown.stdout

    again = lineage_cli("register-models", "--lineage", lineage, "--model-dir", str(model_dir))
    assert again.returncode == 0 and "already registered" in again.stdout


def test_a_score_that_the_artifact_does_not_give_is_a_mismatch(
    topology: Topology, model_dir: Path, make_record: MakeRecord
) -> None:
    lineage = topology.lineage.address
    manifest = load_manifests(model_dir)[("card-fraud", "1")]
    features = sample_requests("card-fraud", 1, 11)[0]
    honest = make_record(
        model_sha256=manifest.artifact_sha256,
        model_version="1",
        features=features,
        features_sha256=features_sha256(features),
        score=0.5,
    )
    send_with_otel_sdk(lineage, [honest])
    wait_for_decision(lineage, honest.decision_id)
    done = lineage_cli(
        "replay", honest.decision_id, "--lineage", lineage, "--model-dir", str(model_dir)
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "MISMATCH" in done.stdout

    unknown = replace(honest, decision_id=str(uuid.uuid4()), model_sha256="ab" * 32)
    send_with_otel_sdk(lineage, [unknown])
    wait_for_decision(lineage, unknown.decision_id)
    done = lineage_cli(
        "replay", unknown.decision_id, "--lineage", lineage, "--model-dir", str(model_dir)
    )
    assert done.returncode == 1 and "ab" * 32 in done.stderr


CONCURRENT_CALLS = 120
IN_FLIGHT = 32
BATCH_ROWS = 200


async def _score_concurrently_and_in_a_batch(gateway: str, point: str, version: str) -> list[str]:
    """Decisions of one model version, made as production makes them: many callers at once
    (micro-batched together in the gateway) and one ScoreBatch."""
    features = sample_requests(point, CONCURRENT_CALLS + BATCH_ROWS, seed=31)
    ids: list[str] = []
    async with grpc.aio.insecure_channel(gateway) as channel:
        stub = scoring_pb2_grpc.ScoringServiceStub(channel)
        slots = asyncio.Semaphore(IN_FLIGHT)

        async def one(i: int) -> None:
            request = score_request(f"c-{uuid.uuid4().hex}", point, f"e{i}", features[i], version)
            async with slots:
                ids.append((await stub.Score(request, timeout=10)).decision_id)

        await asyncio.gather(*(one(i) for i in range(CONCURRENT_CALLS)))
        rows = [
            (f"b-{uuid.uuid4().hex}", f"e{i}", f) for i, f in enumerate(features[CONCURRENT_CALLS:])
        ]
        batch = await stub.ScoreBatch(score_batch_request(point, rows, version), timeout=30)
    assert all(r.WhichOneof("result") == "decision" for r in batch.results)
    return ids + [r.decision.decision_id for r in batch.results]


async def test_concurrent_and_batch_scored_decisions_of_every_demo_model_replay_bit_for_bit(
    topology: Topology, model_dir: Path
) -> None:
    lineage = topology.lineage.address
    mismatches: list[str] = []
    replayed = 0
    for (point, version), manifest in sorted(load_manifests(model_dir).items()):
        ids = await _score_concurrently_and_in_a_batch(topology.gateway.address, point, version)
        for decision_id in ids:
            record = await asyncio.to_thread(wait_for_decision, lineage, decision_id, 30)
            assert record.model.artifact_sha256 == manifest.artifact_sha256
            result = replay(record, model_dir)
            replayed += 1
            if not result.match:
                mismatches.append(
                    f"{manifest.served_name} {decision_id}: stored {result.stored_score!r}, "
                    f"replayed {result.replayed_score!r}, {result.environment_differences}"
                )
    assert replayed == len(load_manifests(model_dir)) * (CONCURRENT_CALLS + BATCH_ROWS)
    assert not mismatches, mismatches[:5]


def test_replay_claims_no_match_in_another_scoring_environment(
    topology: Topology, model_dir: Path, make_record: MakeRecord
) -> None:
    """The score is right, but the runtime reported another onnxruntime: replay says what
    differs and does not claim MATCH."""
    lineage = topology.lineage.address
    request_id = f"env-{uuid.uuid4().hex}"
    features = sample_requests("credit-risk", 1, 12)[0]
    with grpc.insecure_channel(topology.gateway.address) as channel:
        scored = scoring_pb2_grpc.ScoringServiceStub(channel).Score(
            score_request(request_id, "credit-risk", "acct-2", features), timeout=10
        )
    genuine = wait_for_decision(lineage, scored.decision_id, timeout=30)
    assert genuine.model.scoring_environment == scoring_environment()
    shown = lineage_cli("show", scored.decision_id, "--lineage", lineage)
    assert f"onnxruntime={ort.__version__}" in shown.stdout

    recorded = parse_environment(genuine.model.scoring_environment)
    recorded["onnxruntime"] = "1.17.0"
    other = make_record(
        model_sha256=genuine.model.artifact_sha256,
        model_name="credit-risk",
        model_version="1",
        features=features,
        features_sha256=features_sha256(features),
        score=genuine.outputs.score,
        extra={SCORING_ENVIRONMENT: "; ".join(f"{k}={v}" for k, v in recorded.items())},
    )
    send_with_otel_sdk(lineage, [other])
    wait_for_decision(lineage, other.decision_id)
    done = lineage_cli(
        "replay", other.decision_id, "--lineage", lineage, "--model-dir", str(model_dir)
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"onnxruntime: recorded 1.17.0, here {ort.__version__}" in done.stdout
    assert "NOT CONFIRMED" in done.stdout and "MATCH:" not in done.stdout
