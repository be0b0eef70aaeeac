"""Endpoints that are not scoregate's runtime: served names and versions, and the three ways of
verifying what answers (routes file, ModelInfer answers, ModelMetadata), without processes."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from gateway.errors import ConfigError, InvalidModelOutput
from gateway.routing.changes import describe_changes
from gateway.routing.compiled import Routes, compile_routes
from gateway.routing.schema import parse_routes
from gateway.runtime_client.identity import metadata_problem
from gateway.runtime_client.oip import parse_answer
from gateway.runtime_client.targets import ModelTarget, Serving
from lineage.v1 import record
from loadtests.local.topology import demo_routes
from oip.v2 import grpc_predict_v2_pb2 as pb
from runtimes.manifest import CategoryFeature, Manifest

Manifests = dict[tuple[str, str], Manifest]
SERVER = "mlserver.models:8081"


def compiled(manifests: Manifests, config: dict[str, Any]) -> Routes:
    return compile_routes(parse_routes(yaml.safe_dump(config)), manifests, "test")


def with_endpoint(manifests: Manifests, version: str, endpoint: Any) -> dict[str, Any]:
    config = demo_routes(manifests, "127.0.0.1:9001")
    config["models"]["card-fraud"]["versions"][version]["endpoints"] = [endpoint]
    return config


def test_the_identity_values_are_the_records(manifests: Manifests) -> None:
    from typing import get_args

    from gateway.routing.schema import Identity

    assert set(get_args(Identity)) == {
        record.VERIFIED_BY_RESPONSE_PARAMETER,
        record.VERIFIED_BY_METADATA,
        record.VERIFIED_BY_DECLARED,
    }


def test_an_endpoint_map_sets_the_served_name_version_and_identity(manifests: Manifests) -> None:
    endpoint = {"address": SERVER, "served_name": "fraud", "served_version": "3",
                "identity": "metadata"}  # fmt: skip
    routes = compiled(manifests, with_endpoint(manifests, "1", endpoint))
    target = routes.decision_points["card-fraud"].primary
    assert target.endpoints == (SERVER,)
    assert target.serving(SERVER) == Serving("fraud", "3", "metadata")
    # A plain address keeps today's meaning: scoregate's runtime.
    other = routes.decision_points["card-fraud"].versions["2"]
    assert other.serving(other.endpoints[0]) == Serving("card-fraud-v2", "", "response_parameter")


@pytest.mark.parametrize(
    ("endpoint", "message"),
    [
        ({"address": SERVER, "identity": "trusted"},
         "models.card-fraud.versions.1.endpoints[0].identity: Input should be"),
        ({"address": "nohost"}, "models.card-fraud.versions.1.endpoints[0].address"),
        ({"address": SERVER, "served_name": ""}, "versions.1.endpoints[0].served_name"),
        ({"address": SERVER, "weight": 2}, "versions.1.endpoints[0].weight: Extra inputs"),
    ],
)  # fmt: skip
def test_a_wrong_endpoint_is_refused_naming_it(
    manifests: Manifests, endpoint: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        compiled(manifests, with_endpoint(manifests, "1", endpoint))
    assert message in str(refused.value)


def test_two_versions_on_one_served_model_are_refused(manifests: Manifests) -> None:
    config = demo_routes(manifests, "127.0.0.1:9001")
    same = {"address": SERVER, "served_name": "card-fraud", "served_version": "1",
            "identity": "declared"}  # fmt: skip
    for version in ("1", "2"):
        config["models"]["card-fraud"]["versions"][version]["endpoints"] = [same]
    with pytest.raises(ConfigError) as refused:
        compiled(manifests, config)
    assert (
        f"models.card-fraud.versions.2.endpoints[0]: {SERVER} serves model 'card-fraud' "
        "version '1' for card-fraud version 1 already"
    ) in str(refused.value)


def test_plain_addresses_describe_changes_as_before(manifests: Manifests) -> None:
    old = parse_routes(yaml.safe_dump(demo_routes(manifests, "127.0.0.1:9001")))
    new = parse_routes(yaml.safe_dump(demo_routes(manifests, "127.0.0.1:9002")))
    lines, _ = describe_changes(old, new)
    assert "models.card-fraud.versions.1.endpoints: ['127.0.0.1:9001'] -> ['127.0.0.1:9002']" in (
        lines
    )


def metadata(m: Manifest, **changes: Any) -> pb.ModelMetadataResponse:
    response = pb.ModelMetadataResponse(
        name="card-fraud",
        versions=[f"artifact_sha256:{m.artifact_sha256}"],
        inputs=[
            pb.ModelMetadataResponse.TensorMetadata(
                name=f.name, datatype="BYTES" if isinstance(f, CategoryFeature) else "FP32"
            )
            for f in m.features
        ],
        outputs=[pb.ModelMetadataResponse.TensorMetadata(name="probabilities", datatype="FP32")],
    )
    for key, value in changes.items():
        response.ClearField(key)
        if isinstance(value, list):
            getattr(response, key).extend(value)
        else:
            setattr(response, key, value)
    return response


def test_metadata_that_names_the_artifact_verifies_it(manifests: Manifests) -> None:
    m = manifests[("card-fraud", "1")]
    serving = Serving("card-fraud", "1", "metadata")
    assert metadata_problem(m, serving, metadata(m)) == ""
    # A server that lists no tensors (MLServer without them in its model settings) is not
    # refused for it: the digest is what identifies the artifact.
    assert metadata_problem(m, serving, metadata(m, inputs=[], outputs=[])) == ""


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"name": "credit-risk"}, "metadata names model 'credit-risk', not 'card-fraud'"),
        ({"versions": ["1"]}, "metadata names no artifact"),
        ({"versions": ["artifact_sha256:" + "0" * 64]}, "metadata names artifact sha256 0000"),
        ({"inputs": [pb.ModelMetadataResponse.TensorMetadata(name="amount", datatype="FP64")]},
         "metadata input 'amount': FP64, the gateway sends FP32"),
        ({"outputs": [pb.ModelMetadataResponse.TensorMetadata(name="scores")]},
         "metadata lists no output 'probabilities'"),
    ],
)  # fmt: skip
def test_metadata_that_does_not_show_the_artifact_is_refused(
    manifests: Manifests, change: dict[str, Any], problem: str
) -> None:
    m = manifests[("card-fraud", "1")]
    found = metadata_problem(m, Serving("card-fraud", "1", "metadata"), metadata(m, **change))
    assert found.startswith(problem), found


def answer(sha: str = "", name: str = "", version: str = "") -> bytes:
    response = pb.ModelInferResponse(model_name=name, model_version=version)
    response.outputs.add(name="probabilities", datatype="FP32", shape=[1, 2])
    response.outputs[0].contents.fp32_contents.extend([0.25, 0.75])
    if sha:
        response.parameters["artifact_sha256"].string_param = sha
    return bytes(response.SerializeToString())


def target(m: Manifest, identity: str) -> ModelTarget:
    return ModelTarget(m.name, m.version, (SERVER,), m, (Serving("fraud", "3", identity),))


@pytest.mark.parametrize("identity", ["metadata", "declared"])
def test_an_answer_without_the_parameter_counts_for_a_server_verified_otherwise(
    manifests: Manifests, identity: str
) -> None:
    m = manifests[("card-fraud", "1")]
    got = parse_answer(target(m, identity), SERVER, answer(name="fraud", version="3"))
    assert (got.score, got.model_name, got.model_version) == (0.75, "card-fraud", "1")
    assert (got.artifact_sha256, got.identity_verified_by) == (m.artifact_sha256, identity)


@pytest.mark.parametrize(
    ("data", "refusal"),
    [
        (answer(sha="ab" * 32), "reports artifact sha256 abab"),
        (answer(name="fraud", version="4"), "answered as model 'fraud' version '4', not 'fraud'"),
        (answer(name="card-fraud-v1"), "answered as model 'card-fraud-v1' version ''"),
    ],
)
def test_an_answer_from_another_artifact_name_or_version_is_refused(
    manifests: Manifests, data: bytes, refusal: str
) -> None:
    m = manifests[("card-fraud", "1")]
    with pytest.raises(InvalidModelOutput) as refused:
        parse_answer(target(m, "declared"), SERVER, data)
    assert f"model fraud at {SERVER} " + refusal in str(refused.value)


def test_scoregates_runtime_must_name_the_artifact(manifests: Manifests) -> None:
    m = manifests[("card-fraud", "1")]
    with pytest.raises(InvalidModelOutput, match=r"reports artifact sha256 \(none\)"):
        parse_answer(target(m, "response_parameter"), SERVER, answer(version="3"))
