"""Routing to a stock OIP v2 server: a real MLServer, in its own interpreter, behind the real
gateway, with decisions delivered through the outbox to a real lineage store.

MLServer serves card-fraud v1's artifact as ``card-fraud`` version ``1``, its model settings
naming the artifact's sha256 (what ``identity: metadata`` checks), and credit-risk v1's as
``credit-risk-model`` with no version and no digest (only ``identity: declared`` can route to
it). Neither answer carries an ``artifact_sha256`` parameter, as no stock MLServer runtime's does.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import yaml
from support.mlserver_env import ServedModel, ensure_venv, start_mlserver
from support.waiting import wait_until

from gateway.demo_rules import DEMO_RULES
from lineage.v1 import lineage_pb2, lineage_pb2_grpc
from loadtests.local.topology import ManagedProcess, start_gateway, start_lineage
from runtimes.graph import BYTES, input_specs, open_session, run_rows
from runtimes.manifest import Manifest
from runtimes.training.datasets import FeatureValue, sample_requests
from scoring.v1 import scoring_pb2, scoring_pb2_grpc
from scoring.v1.requests import score_request

Manifests = dict[tuple[str, str], Manifest]


def artifact(model_dir: Path, m: Manifest) -> Path:
    return model_dir / m.name / m.version / m.artifact


@pytest.fixture(scope="module")
def mlserver(
    model_dir: Path, manifests: Manifests, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ManagedProcess]:
    command, _ = ensure_venv()
    card, credit = manifests[("card-fraud", "1")], manifests[("credit-risk", "1")]
    models = [
        ServedModel(card, artifact(model_dir, card), "card-fraud", "1", card.artifact_sha256),
        ServedModel(credit, artifact(model_dir, credit), "credit-risk-model"),
    ]
    proc = start_mlserver(command, models, tmp_path_factory.mktemp("mlserver"))
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def lineage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ManagedProcess]:
    workdir = tmp_path_factory.mktemp("mlserver-lineage")
    proc = start_lineage(workdir / "lineage.db", workdir)
    try:
        yield proc
    finally:
        assert proc.stop() == 0, proc.log_tail()


def policy(point: str) -> dict[str, Any]:
    return {"version": f"{point}-policy-1", "review_at": 0.5, "decline_at": 0.85}


def routes(
    card_version: str, card_endpoint: dict[str, Any], credit_endpoint: dict[str, Any]
) -> dict[str, Any]:
    """card-fraud's ``card_version`` and credit-risk v1, each on one MLServer endpoint; card-fraud
    falls back to its rules file, credit-risk to nothing."""
    return {
        "models": {
            "card-fraud": {"versions": {card_version: {"endpoints": [card_endpoint]}}},
            "credit-risk": {"versions": {"1": {"endpoints": [credit_endpoint]}}},
        },
        "rules": {"card-fraud-rules": {"file": str(DEMO_RULES["card-fraud"])}},
        "decision_points": {
            "card-fraud": {
                "primary": {"model": "card-fraud", "version": card_version},
                "timeout_ms": 2000,
                "fallback": {"chain": [{"rules": "card-fraud-rules"}]},
                "policy": policy("card-fraud"),
            },
            "credit-risk": {
                "primary": {"model": "credit-risk", "version": "1"},
                "timeout_ms": 2000,
                "policy": policy("credit-risk"),
            },
        },
    }


@dataclass
class Gateway:
    proc: ManagedProcess
    lineage: ManagedProcess

    def score(self, point: str, seed: int) -> tuple[scoring_pb2.ScoreResponse, dict[str, Any]]:
        features = sample_requests(point, 1, seed=seed)[0]
        request = score_request(f"mlserver-{point}-{seed}", point, f"cust-{seed}", features)
        with grpc.insecure_channel(self.proc.address) as channel:
            stub = scoring_pb2_grpc.ScoringServiceStub(channel)
            response: scoring_pb2.ScoreResponse = stub.Score(request, timeout=10)
        return response, features

    def stored(self, decision_id: str) -> lineage_pb2.DecisionRecord:
        def get() -> lineage_pb2.DecisionRecord | None:
            with grpc.insecure_channel(self.lineage.address) as channel:
                stub = lineage_pb2_grpc.LineageServiceStub(channel)
                try:
                    return stub.GetDecision(
                        lineage_pb2.GetDecisionRequest(decision_id=decision_id), timeout=5
                    )
                except grpc.RpcError as e:
                    if e.code() != grpc.StatusCode.NOT_FOUND:
                        raise
                    return None

        found = wait_until(get, 15.0, f"decision {decision_id} stored", until=bool)
        assert found is not None
        return found


def start(
    name: str, config: dict[str, Any], model_dir: Path, lineage: ManagedProcess, workdir: Path
) -> ManagedProcess:
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "routes.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return start_gateway(
        path,
        model_dir,
        workdir,
        name=name,
        lineage_endpoint=lineage.address,
        outbox_dir=workdir / "outbox",
    )


@pytest.fixture(scope="module")
def verified(
    mlserver: ManagedProcess,
    lineage: ManagedProcess,
    model_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Gateway]:
    """card-fraud v1 verified by MLServer's model metadata; credit-risk v1 declared."""
    config = routes(
        "1",
        {"address": mlserver.address, "served_name": "card-fraud", "served_version": "1",
         "identity": "metadata"},
        {"address": mlserver.address, "served_name": "credit-risk-model", "identity": "declared"},
    )  # fmt: skip
    proc = start("verified", config, model_dir, lineage, tmp_path_factory.mktemp("verified"))
    try:
        yield Gateway(proc, lineage)
    finally:
        assert proc.stop() == 0, proc.log_tail()


@pytest.fixture(scope="module")
def mistaken(
    mlserver: ManagedProcess,
    lineage: ManagedProcess,
    model_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Gateway]:
    """card-fraud v2 routed to MLServer's card-fraud 1 (v1's artifact), checked by metadata;
    credit-risk v1 with the default identity, which MLServer's answers cannot show."""
    config = routes(
        "2",
        {"address": mlserver.address, "served_name": "card-fraud", "served_version": "1",
         "identity": "metadata"},
        {"address": mlserver.address, "served_name": "credit-risk-model"},
    )  # fmt: skip
    proc = start("mistaken", config, model_dir, lineage, tmp_path_factory.mktemp("mistaken"))
    try:
        yield Gateway(proc, lineage)
    finally:
        assert proc.stop() == 0, proc.log_tail()


def in_process_score(model_dir: Path, m: Manifest, features: dict[str, FeatureValue]) -> float:
    """The score onnxruntime gives the row in this process, as scoregate's runtime runs it."""
    feed = {}
    for spec in input_specs(m.features):
        value = features[spec.name]
        if spec.datatype == BYTES:
            feed[spec.name] = np.array([[value]], dtype=object)
        else:
            feed[spec.name] = np.array([[float(value)]], dtype=np.float32)
    session = open_session(str(artifact(model_dir, m)))
    [probabilities] = run_rows(session, [m.outputs.probabilities], feed)
    return float(probabilities[0][m.outputs.positive_class_index])


def shown_identity(decision_id: str, lineage: ManagedProcess) -> str:
    """The "identity verified by" line of ``scoregate lineage show``."""
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "lineage", "show", decision_id,
         "--lineage", lineage.address],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    label = "identity verified by"
    [line] = [x for x in done.stdout.splitlines() if x.startswith(label + " ")]
    return line[len(label) :].strip()


def test_a_decision_scored_by_mlserver_is_in_lineage_verified_by_its_metadata(
    verified: Gateway, model_dir: Path, manifests: Manifests
) -> None:
    answer, features = verified.score("card-fraud", seed=31)
    card = manifests[("card-fraud", "1")]
    assert (answer.arm, answer.model_version, answer.model_sha256) == (
        "primary",
        "1",
        card.artifact_sha256,
    )
    assert answer.score == in_process_score(model_dir, card, features)

    record = verified.stored(answer.decision_id)
    assert (record.model.name, record.model.version) == ("card-fraud", "1")
    assert record.model.artifact_sha256 == card.artifact_sha256
    assert record.model.identity_verified_by == "metadata"
    assert record.outputs.score == answer.score
    assert shown_identity(answer.decision_id, verified.lineage).startswith(
        "metadata: the server's model metadata"
    )


def test_a_declared_endpoint_is_recorded_as_declared(
    verified: Gateway, model_dir: Path, manifests: Manifests
) -> None:
    answer, features = verified.score("credit-risk", seed=32)
    credit = manifests[("credit-risk", "1")]
    assert (answer.arm, answer.model_version) == ("primary", "1")
    assert answer.score == in_process_score(model_dir, credit, features)

    record = verified.stored(answer.decision_id)
    assert record.model.artifact_sha256 == credit.artifact_sha256
    assert record.model.identity_verified_by == "declared"
    assert shown_identity(answer.decision_id, verified.lineage).startswith("declared: nothing")


def test_metadata_naming_another_artifact_is_refused_and_the_fallback_answers(
    mistaken: Gateway, mlserver: ManagedProcess, manifests: Manifests
) -> None:
    answer, _ = mistaken.score("card-fraud", seed=33)
    assert (answer.arm, answer.fallback_reason) == ("fallback", "invalid_output")
    assert answer.model_name == "card-fraud-rules"

    record = mistaken.stored(answer.decision_id)
    assert record.model.identity_verified_by == "rules_file"
    assert record.fallback_from == "card-fraud-v2"
    error = record.fallback_error
    assert f"at {mlserver.address}: identity refused" in error
    assert manifests[("card-fraud", "1")].artifact_sha256 in error  # what the server named
    assert manifests[("card-fraud", "2")].artifact_sha256 in error  # what the manifest says


def test_an_answer_without_the_artifact_parameter_is_refused_naming_the_endpoint(
    mistaken: Gateway, mlserver: ManagedProcess
) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        mistaken.score("credit-risk", seed=34)
    assert refused.value.code() == grpc.StatusCode.INTERNAL
    details = refused.value.details() or ""
    assert f"model credit-risk-model at {mlserver.address} reports artifact sha256 (none)" in (
        details
    )


def test_a_server_replaced_behind_the_address_is_checked_again_on_reconnect(
    lineage: ManagedProcess,
    model_dir: Path,
    manifests: Manifests,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The model behind card-fraud 1 is swapped for v2's artifact (its settings naming v2's
    digest, so the server itself loads it happily): once the gateway reconnects, its metadata
    check refuses the endpoint, and the fallback answers."""
    command, _ = ensure_venv()
    v1, v2 = manifests[("card-fraud", "1")], manifests[("card-fraud", "2")]
    workdir = tmp_path_factory.mktemp("swapped")
    first = start_mlserver(
        command,
        [ServedModel(v1, artifact(model_dir, v1), "card-fraud", "1", v1.artifact_sha256)],
        workdir / "first",
    )
    address = first.address
    config = routes(
        "1",
        {"address": address, "served_name": "card-fraud", "served_version": "1",
         "identity": "metadata"},
        {"address": address, "served_name": "credit-risk-model", "identity": "declared"},
    )  # fmt: skip
    proc = start("swapped", config, model_dir, lineage, workdir / "gateway")
    gateway = Gateway(proc, lineage)
    second = None
    try:
        answer, _ = gateway.score("card-fraud", seed=35)
        assert (answer.arm, answer.model_sha256) == ("primary", v1.artifact_sha256)

        assert first.stop() == 0
        port = int(address.rpartition(":")[2])
        swapped = ServedModel(v2, artifact(model_dir, v2), "card-fraud", "1", v2.artifact_sha256)
        second = start_mlserver(command, [swapped], workdir / "second", grpc_port=port)

        seeds = iter(range(36, 1000))
        refused = wait_until(
            lambda: gateway.score("card-fraud", seed=next(seeds))[0],
            30.0,
            "a card-fraud answer refusing the swapped model",
            until=lambda a: a.fallback_reason == "invalid_output",
        )
        assert refused.arm == "fallback"
        error = gateway.stored(refused.decision_id).fallback_error
        assert f"at {address}: identity refused: metadata names artifact sha256 " in error
        assert v2.artifact_sha256 in error
    finally:
        assert proc.stop() == 0, proc.log_tail()
        first.stop()
        if second is not None:
            second.stop()
