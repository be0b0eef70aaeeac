"""Pre-encoded requests for each bench path, all carrying the same card-fraud sample rows.

The direct runtime call sends the ModelInferRequest a protobuf OIP v2 client would send (one
input per feature, shape [1, 1], typed contents), the same thing the gateway sends it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from oip.v2 import grpc_predict_v2_pb2 as oip
from runtimes.manifest import BooleanFeature, CategoryFeature, Manifest, read_manifest
from runtimes.training.datasets import sample_requests
from scoring.v1 import scoring_pb2
from scoring.v1.requests import score_batch_columns_request, score_request

DECISION_POINT = "card-fraud"
SCORE_METHOD = "/scoring.v1.ScoringService/Score"
MODEL_INFER_METHOD = "/inference.GRPCInferenceService/ModelInfer"
# Field numbers a load generator can overwrite per call (protobuf: the last occurrence wins).
SCORE_REQUEST_ID_FIELD = scoring_pb2.ScoreRequest.REQUEST_ID_FIELD_NUMBER
MODEL_INFER_ID_FIELD = oip.ModelInferRequest.ID_FIELD_NUMBER


def card_fraud_manifest(model_dir: Path, version: str = "1") -> tuple[Path, Manifest]:
    folder = model_dir / DECISION_POINT / version
    return folder, read_manifest(folder)


def sample_rows(n: int, seed: int = 3) -> list[dict[str, Any]]:
    return sample_requests(DECISION_POINT, n, seed)


def score_payloads(rows: list[dict[str, Any]]) -> list[bytes]:
    return [
        score_request(f"bench-{i}", DECISION_POINT, f"cust-{i % 997}", row).SerializeToString()
        for i, row in enumerate(rows)
    ]


def model_infer_payloads(manifest: Manifest, rows: list[dict[str, Any]]) -> list[bytes]:
    payloads = []
    for row in rows:
        request = oip.ModelInferRequest(model_name=manifest.served_name)
        for feature in manifest.features:
            value = row[feature.name]
            tensor = request.inputs.add(name=feature.name, shape=[1, 1])
            if isinstance(feature, CategoryFeature):
                tensor.datatype = "BYTES"
                tensor.contents.bytes_contents.append(str(value).encode())
            else:
                tensor.datatype = "FP32"
                number = float(bool(value)) if isinstance(feature, BooleanFeature) else value
                tensor.contents.fp32_contents.append(float(number))
        payloads.append(request.SerializeToString())
    return payloads


def score_batch_method() -> str | None:
    """ScoreBatch's path; None if the proto has no such RPC (found through the descriptor)."""
    service = scoring_pb2.DESCRIPTOR.services_by_name["ScoringService"]
    method = service.methods_by_name.get("ScoreBatch")
    return None if method is None else f"/{service.full_name}/{method.name}"


def score_batch_payloads(rows: list[dict[str, Any]], batch: int, count: int) -> list[bytes]:
    if score_batch_method() is None:
        return []
    payloads = []
    for b in range(count):
        picked = [(b * batch + i) % len(rows) for i in range(batch)]
        # The columnar form: what a bulk caller sends (names once, numbers packed).
        request = score_batch_columns_request(
            DECISION_POINT,
            [(f"bench-b{b}-{i}", f"cust-{n}", rows[n]) for i, n in enumerate(picked)],
        )
        payloads.append(request.SerializeToString())
    return payloads
