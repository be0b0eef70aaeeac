"""The precompiled OIP v2 request encoding equals what a protobuf client would send."""

from __future__ import annotations

import math
import struct

import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

from gateway.runtime_client.oip import RequestEncoder
from runtimes.manifest import CategoryFeature, Manifest
from runtimes.training.datasets import sample_requests


def _reference(manifest: Manifest, features: dict[str, object], request_id: str) -> bytes:
    inputs = []
    for f in manifest.features:
        value = features[f.name]
        if isinstance(f, CategoryFeature):
            contents = pb.InferTensorContents(bytes_contents=[str(value).encode()])
            datatype = "BYTES"
        else:
            contents = pb.InferTensorContents(fp32_contents=[float(value)])  # type: ignore[arg-type]
            datatype = "FP32"
        inputs.append(
            pb.ModelInferRequest.InferInputTensor(
                name=f.name, datatype=datatype, shape=[1, 1], contents=contents
            )
        )
    message = pb.ModelInferRequest(model_name=manifest.served_name, id=request_id, inputs=inputs)
    return bytes(message.SerializeToString())


@pytest.mark.parametrize(
    ("name", "version"),
    [
        ("card-fraud", "1"),
        ("card-fraud", "2"),
        ("churn", "1"),
        ("credit-risk", "1"),
        ("trade-anomaly", "1"),
    ],
)
def test_encoded_requests_parse_to_the_reference_request(
    manifests: dict[tuple[str, str], Manifest], name: str, version: str
) -> None:
    manifest = manifests[(name, version)]
    encoder = RequestEncoder(manifest)
    for i, features in enumerate(sample_requests(name, 20, seed=5)):
        snapshot = {k: v if isinstance(v, bool | str) else float(v) for k, v in features.items()}
        encoded = encoder.encode(snapshot, f"decision-{i}")
        parsed = pb.ModelInferRequest.FromString(encoded)
        assert parsed == pb.ModelInferRequest.FromString(
            _reference(manifest, snapshot, f"decision-{i}")
        )
        for tensor in parsed.inputs:
            if tensor.datatype == "FP32":
                [value] = tensor.contents.fp32_contents
                expected = struct.unpack("<f", struct.pack("<f", float(snapshot[tensor.name])))
                assert value == expected[0]


def test_absent_optional_numbers_go_as_nan(manifests: dict[tuple[str, str], Manifest]) -> None:
    manifest = manifests[("credit-risk", "1")]
    features = {k: v for k, v in sample_requests("credit-risk", 1, seed=1)[0].items()}
    del features["annual_income"]
    parsed = pb.ModelInferRequest.FromString(RequestEncoder(manifest).encode(features))
    income = next(t for t in parsed.inputs if t.name == "annual_income")
    assert math.isnan(income.contents.fp32_contents[0])
