"""Demo decisions made by the real gateway and runtime replay bit for bit; the manifests they
name are registered and resolve from the decision."""

from __future__ import annotations

import uuid
from dataclasses import replace
from pathlib import Path

import grpc
from lineage_support import MakeRecord, get_decision, send_with_otel_sdk, wait_for_decision
from test_lineage_cli import lineage_cli

from lineage.v1 import lineage_pb2, lineage_pb2_grpc
from lineage.v1.record import features_sha256
from loadtests.local.topology import Topology
from runtimes.manifest import load_manifests
from runtimes.training.datasets import sample_requests
from scoring.v1 import scoring_pb2_grpc
from scoring.v1.requests import score_request


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
