"""Demo decisions made by the real gateway and runtime replay bit for bit; the manifests they
name are registered and resolve from the decision."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import onnxruntime as ort
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc
from lineage_support import (
    MakeRecord,
    get_decision,
    send_with_otel_sdk,
    uuid7,
    wait_for_decision,
)
from support.oip import infer_request
from test_lineage_cli import lineage_cli

from governance.replay import replay
from lineage.v1 import lineage_pb2, lineage_pb2_grpc
from lineage.v1.record import (
    REASONS_WANTED,
    SCORING_ENVIRONMENT,
    DecisionRecord,
    ReasonEntry,
    features_sha256,
)
from loadtests.local.topology import Topology
from oip.v2.parameters import CONTRIBUTIONS_BASE_PARAMETER, SCORING_ENVIRONMENT_PARAMETER
from runtimes.graph import parse_environment, scoring_environment
from runtimes.manifest import Manifest, find_model_folders, load_manifests, read_manifest
from runtimes.reasons import ReasonRanker, read_catalogue
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


def _runtime_answer(
    runtime: str, manifest: Manifest, features: dict[str, Any]
) -> tuple[float, list[float], float, str]:
    """What the real runtime answers when asked for contributions, as the gateway asks: the
    score, the FP32 contributions as floats, the base value and the scoring environment."""
    request = infer_request(manifest, [features]).to_grpc()
    for name in ("probabilities", "contributions"):
        request.outputs.add(name=name)
    with grpc.insecure_channel(runtime) as channel:
        answer = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=10)
    names = [o.name for o in answer.outputs]

    def output(name: str) -> np.ndarray:
        i = names.index(name)
        data = np.frombuffer(answer.raw_output_contents[i], dtype="<f4")
        return data.reshape(list(answer.outputs[i].shape))

    score = float(output("probabilities")[0, manifest.outputs.positive_class_index])
    contributions = [float(v) for v in output("contributions")[0]]
    base = float(answer.parameters[CONTRIBUTIONS_BASE_PARAMETER].string_param)
    return score, contributions, base, answer.parameters[SCORING_ENVIRONMENT_PARAMETER].string_param


def _recorded_as_the_gateway_records(
    topology: Topology, make_record: MakeRecord, point: str, seed: int, wanted: int
) -> DecisionRecord:
    """A decision whose score and contributions the real runtime computed, its reasons ranked
    through the model directory's catalogue as the gateway ranks them."""
    [folder] = [
        f
        for f in find_model_folders(topology.model_dir)
        if (read_manifest(f).name, read_manifest(f).version) == (point, "1")
    ]
    manifest = read_manifest(folder)
    features = sample_requests(point, 1, seed)[0]
    score, contributions, base, environment = _runtime_answer(
        topology.runtime.address, manifest, features
    )
    ranker = ReasonRanker(
        manifest, read_catalogue(folder, manifest, manifest.reason_catalogue_sha256)
    )
    reasons = tuple(
        ReasonEntry(
            code=r.code,
            contribution=r.contribution,
            description=r.statement,
            feature=r.feature,
            rank=r.rank,
        )
        for r in ranker.rank(contributions, features, wanted)
    )
    assert reasons, "the sample should have an adverse contribution"
    return make_record(
        decision_point=point,
        model_name=point,
        model_version="1",
        model_sha256=manifest.artifact_sha256,
        features=features,
        features_sha256=features_sha256(features),
        score=score,
        reasons=reasons,
        reason_catalogue_version=ranker.catalogue_version,
        contributions=dict(zip(ranker.feature_names, contributions, strict=True)),
        contributions_base=base,
        extra={SCORING_ENVIRONMENT: environment, REASONS_WANTED: str(wanted)},
    )


def _replayed(topology: Topology, model_dir: Path, record: DecisionRecord) -> Any:
    lineage = topology.lineage.address
    send_with_otel_sdk(lineage, [record])
    wait_for_decision(lineage, record.decision_id)
    return lineage_cli(
        "replay", record.decision_id, "--lineage", lineage, "--model-dir", str(model_dir)
    )


def test_contributions_and_reasons_replay_bit_for_bit_and_a_changed_one_is_named(
    topology: Topology, model_dir: Path, make_record: MakeRecord
) -> None:
    for point, seed in (("credit-risk", 41), ("card-fraud", 42)):
        genuine = _recorded_as_the_gateway_records(topology, make_record, point, seed, 4)
        done = _replayed(topology, model_dir, genuine)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "MATCH: the replayed score, contributions and reasons equal" in done.stdout
        codes = ", ".join(r.code for r in genuine.reasons)
        assert f"{codes}  (catalogue {genuine.reason_catalogue_version})" in done.stdout

    # One contribution off by its last bit: the score still matches, the record does not.
    name, value = next(iter(genuine.contributions.items()))
    off = float(np.nextafter(np.float32(value), np.float32(np.inf)))
    tampered = replace(
        genuine,
        decision_id=uuid7(),
        contributions={**genuine.contributions, name: off},
    )
    done = _replayed(topology, model_dir, tampered)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"differs: contribution of {name}: recorded {off!r}, replayed {value!r}" in done.stdout
    assert "MISMATCH: the score is equal, but the replayed contributions" in done.stdout
    assert not any(line.startswith("MATCH") for line in done.stdout.splitlines())

    # Another principal reason, another base value, a catalogue version and a reason fewer.
    first, *rest = genuine.reasons
    forged = replace(first, code="R99")
    altered = replace(
        genuine,
        decision_id=uuid7(),
        reasons=(forged, *rest),
        contributions_base=genuine.contributions_base + 1.0,
        reason_catalogue_version="rc-forged",
    )
    done = _replayed(topology, model_dir, altered)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"differs: reason 1: recorded R99 {first.description!r}" in done.stdout
    assert f"replayed {first.code} {first.description!r}" in done.stdout
    assert (
        f"differs: base value: recorded {genuine.contributions_base + 1.0!r}, "
        f"replayed {genuine.contributions_base!r}"
    ) in done.stdout
    assert "differs: reason catalogue: recorded 'rc-forged'" in done.stdout

    fewer = replace(genuine, decision_id=uuid7(), extra={**genuine.extra, REASONS_WANTED: "1"})
    done = _replayed(topology, model_dir, fewer)
    if len(genuine.reasons) > 1:
        assert done.returncode == 1, done.stdout + done.stderr
        assert f"differs: reasons: recorded {len(genuine.reasons)}, replayed 1" in done.stdout


def test_a_decision_without_contributions_replays_as_before(
    topology: Topology, model_dir: Path, make_record: MakeRecord
) -> None:
    genuine = _recorded_as_the_gateway_records(topology, make_record, "credit-risk", 43, 4)
    plain = replace(
        genuine,
        contributions={},
        contributions_base=0.0,
        reasons=(ReasonEntry(code="RULE-1", description="rules file reason", rank=1),),
        extra={SCORING_ENVIRONMENT: genuine.extra[SCORING_ENVIRONMENT]},
    )
    done = _replayed(topology, model_dir, plain)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "MATCH: the replayed score equals the stored score bit for bit" in done.stdout
    assert "contributions" not in done.stdout
