"""The real runtime against the OIP v2 rules KServe leaves out: model versions, requested outputs,
model platform and versions, advertised extensions, the repository calls it refuses (gRPC, and
KServe's REST where it shares the behaviour)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc
from support.oip import infer_request

from loadtests.local.topology import ManagedProcess
from runtimes.manifest import Manifest
from runtimes.training.datasets import sample_requests

SERVED = ("card-fraud-v1", "card-fraud-v2", "churn-v1", "credit-risk-v1", "trade-anomaly-v1")


@pytest.fixture
async def stub(runtime: ManagedProcess) -> AsyncIterator[pb_grpc.GRPCInferenceServiceStub]:
    async with grpc.aio.insecure_channel(runtime.address) as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)


def infer(m: Manifest, version: str = "", outputs: tuple[str, ...] = ()) -> pb.ModelInferRequest:
    request = infer_request(m, sample_requests(m.name, 3, seed=11)).to_grpc()
    request.model_version = version
    for name in outputs:
        request.outputs.add(name=name)
    return request


async def refused(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call  # type: ignore[misc]
    return caught.value


async def test_server_metadata_advertises_no_extension(
    stub: pb_grpc.GRPCInferenceServiceStub,
) -> None:
    meta = await stub.ServerMetadata(pb.ServerMetadataRequest(), timeout=5)
    assert meta.name == "kserve" and meta.version
    assert list(meta.extensions) == []


@pytest.mark.parametrize("served", SERVED)
async def test_model_metadata_names_platform_and_the_version_served(
    served: str, stub: pb_grpc.GRPCInferenceServiceStub, manifests: dict[str, Manifest]
) -> None:
    version = manifests[served].version
    for asked in ("", version):
        meta = await stub.ModelMetadata(
            pb.ModelMetadataRequest(name=served, version=asked), timeout=5
        )
        assert meta.name == served
        assert meta.platform == "onnxruntime_onnx"
        assert list(meta.versions) == [version]
        assert {o.name for o in meta.outputs} == {"probabilities", "label", "contributions"}


@pytest.mark.parametrize("served", SERVED)
async def test_model_ready_for_the_served_version_only(
    served: str, stub: pb_grpc.GRPCInferenceServiceStub, manifests: dict[str, Manifest]
) -> None:
    version = manifests[served].version
    for asked in ("", version):
        ready = await stub.ModelReady(pb.ModelReadyRequest(name=served, version=asked), timeout=5)
        assert ready.ready, asked
    error = await refused(stub.ModelReady(pb.ModelReadyRequest(name=served, version="999")))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert error.details() == (
        f"model '{served}' has no version '999'; it serves version '{version}'"
    )


async def test_an_unknown_version_is_not_found_in_metadata_and_infer(
    stub: pb_grpc.GRPCInferenceServiceStub, manifests: dict[str, Manifest]
) -> None:
    m = manifests["card-fraud-v1"]
    # card-fraud version 2 exists, but under its own name: card-fraud-v1 does not answer for it.
    for call in (
        stub.ModelMetadata(pb.ModelMetadataRequest(name=m.served_name, version="2")),
        stub.ModelInfer(infer(m, version="2")),
        stub.ModelInfer(infer(m, version="999")),
    ):
        error = await refused(call)
        assert error.code() == grpc.StatusCode.NOT_FOUND
        assert f"model '{m.served_name}' has no version" in str(error.details())


async def test_an_unknown_model_is_not_found_naming_it(
    stub: pb_grpc.GRPCInferenceServiceStub,
) -> None:
    for call in (
        stub.ModelReady(pb.ModelReadyRequest(name="card-fraud", version="1")),
        stub.ModelMetadata(pb.ModelMetadataRequest(name="card-fraud")),
    ):
        error = await refused(call)
        assert error.code() == grpc.StatusCode.NOT_FOUND
        assert "card-fraud " in str(error.details())


@pytest.mark.parametrize("served", SERVED)
async def test_infer_answers_with_the_version_served(
    served: str, stub: pb_grpc.GRPCInferenceServiceStub, manifests: dict[str, Manifest]
) -> None:
    m = manifests[served]
    for asked in ("", m.version):
        response = await stub.ModelInfer(infer(m, version=asked), timeout=10)
        assert response.model_name == served and response.model_version == m.version


@pytest.mark.parametrize(
    "outputs",
    [(), ("label",), ("probabilities",), ("label", "probabilities")],
)
async def test_only_the_requested_outputs_are_returned(
    outputs: tuple[str, ...],
    stub: pb_grpc.GRPCInferenceServiceStub,
    manifests: dict[str, Manifest],
) -> None:
    response = await stub.ModelInfer(infer(manifests["credit-risk-v1"], outputs=outputs))
    expected = outputs or ("probabilities", "label")
    shapes = {"probabilities": [3, 2], "label": [3]}
    assert [(o.name, list(o.shape)) for o in response.outputs] == [
        (name, shapes[name]) for name in expected
    ]
    assert len(response.raw_output_contents) == len(expected)


async def test_an_unknown_or_repeated_output_is_invalid_argument_naming_it(
    stub: pb_grpc.GRPCInferenceServiceStub, manifests: dict[str, Manifest]
) -> None:
    m = manifests["card-fraud-v2"]
    cases = [
        (("label", "score"), "requested output 'score' does not exist"),
        (("label", "label"), "output 'label' is requested more than once"),
    ]
    for outputs, needle in cases:
        error = await refused(stub.ModelInfer(infer(m, outputs=outputs)))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert needle in str(error.details())
    request = infer(m, outputs=("label",))
    request.outputs[0].parameters["classification"].int64_param = 2
    error = await refused(stub.ModelInfer(request))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "'label' has parameter 'classification'" in str(error.details())


async def test_repository_calls_are_unimplemented_and_unload_nothing(
    stub: pb_grpc.GRPCInferenceServiceStub,
) -> None:
    for call in (
        stub.RepositoryModelUnload(pb.RepositoryModelUnloadRequest(model_name="card-fraud-v1")),
        stub.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name="card-fraud-v1")),
    ):
        error = await refused(call)
        assert error.code() == grpc.StatusCode.UNIMPLEMENTED
        assert "fixed when the runtime starts" in str(error.details())
    ready = await stub.ModelReady(pb.ModelReadyRequest(name="card-fraud-v1"), timeout=5)
    assert ready.ready


def rest(runtime: ManagedProcess, method: str, path: str) -> tuple[int, Any]:
    request = urllib.request.Request(f"http://{runtime.info['http']}{path}", method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def test_over_rest_no_extension_is_advertised_and_unload_is_refused(
    runtime: ManagedProcess, manifests: dict[str, Manifest]
) -> None:
    status, server = rest(runtime, "GET", "/v2")
    assert status == 200 and server["extensions"] == []
    status, meta = rest(runtime, "GET", "/v2/models/credit-risk-v1")
    assert status == 200 and meta["platform"] == "onnxruntime_onnx" and meta["versions"] == ["1"]
    for action in ("unload", "load"):
        status, body = rest(runtime, "POST", f"/v2/repository/models/credit-risk-v1/{action}")
        assert status == 501 and "fixed when the runtime starts" in body["error"]
    status, ready = rest(runtime, "GET", "/v2/models/credit-risk-v1/ready")
    assert status == 200 and ready["ready"]
