"""The runtime's optional ``contributions`` output, on the real process: given only when asked
for, FP32 [N, F] in the manifest's feature order, equal to the explainer run in process on the
same artifact, adding up with ``contributions_base`` to each row's raw margin."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc
from support.oip import infer_request

from loadtests.local.topology import ManagedProcess
from runtimes.explain.explainer import Explainer
from runtimes.graph import BYTES, input_specs
from runtimes.manifest import Manifest
from runtimes.training.datasets import sample_requests

SERVED = ("card-fraud-v1", "card-fraud-v2", "churn-v1", "credit-risk-v1", "trade-anomaly-v1")
ROWS = 40


@pytest.fixture
async def stub(runtime: ManagedProcess) -> AsyncIterator[pb_grpc.GRPCInferenceServiceStub]:
    async with grpc.aio.insecure_channel(runtime.address) as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)


def _output(response: pb.ModelInferResponse, name: str) -> np.ndarray:
    i = [o.name for o in response.outputs].index(name)
    shape = list(response.outputs[i].shape)
    return np.frombuffer(response.raw_output_contents[i], dtype="<f4").reshape(shape)


def _feed(m: Manifest, rows: list[dict[str, object]]) -> dict[str, np.ndarray]:
    feed = {}
    for spec in input_specs(m.features):
        values = [row.get(spec.name, math.nan) for row in rows]
        if spec.datatype == BYTES:
            feed[spec.name] = np.array([[str(v)] for v in values], dtype=object)
        else:
            feed[spec.name] = np.array([[float(v)] for v in values], dtype=np.float32)  # type: ignore[arg-type]
    return feed


@pytest.mark.parametrize("served", SERVED)
async def test_contributions_are_given_when_asked_and_add_up_to_the_margin(
    served: str,
    stub: pb_grpc.GRPCInferenceServiceStub,
    manifests: dict[str, Manifest],
    model_dir: Path,
) -> None:
    m = manifests[served]
    rows = sample_requests(m.name, ROWS, seed=17)
    request = infer_request(m, rows).to_grpc()
    plain = await stub.ModelInfer(request, timeout=10)
    assert [o.name for o in plain.outputs] == ["probabilities", "label"]
    assert "contributions_base" not in plain.parameters

    for name in ("probabilities", "contributions"):
        request.outputs.add(name=name)
    answer = await stub.ModelInfer(request, timeout=10)
    assert [o.name for o in answer.outputs] == ["probabilities", "contributions"]
    contributions = _output(answer, "contributions")
    assert contributions.shape == (ROWS, len(m.features))
    base = float(answer.parameters["contributions_base"].string_param)

    explainer = Explainer.for_artifact(model_dir / m.name / m.version / m.artifact, m)
    here = explainer.contributions(_feed(m, rows))
    assert np.array_equal(contributions, here.values.astype(np.float32))
    assert base == here.base_value
    # The contributions explain the score the runtime gave: the graph's post-transform of sum +
    # base (the logistic function of the log-odds; exp of log s for the anomaly forest) is p.
    p = _output(answer, "probabilities")[:, m.outputs.positive_class_index].astype(np.float64)
    margin = contributions.astype(np.float64).sum(axis=1) + base
    assert np.max(np.abs(explainer.link.probability(margin) - p)) < 1e-5


async def test_contributions_of_one_row_equal_its_contributions_in_a_batch(
    stub: pb_grpc.GRPCInferenceServiceStub, manifests: dict[str, Manifest]
) -> None:
    m = manifests["card-fraud-v2"]
    # Some rows lack distance_from_home_km, which goes to the runtime as its missing value.
    rows = [
        {"distance_from_home_km": math.nan, **row}
        for row in sample_requests(m.name, 20, seed=18, absent=True)
    ]
    assert any(math.isnan(float(r["distance_from_home_km"])) for r in rows)
    batch = infer_request(m, rows).to_grpc()
    batch.outputs.add(name="contributions")
    together = _output(await stub.ModelInfer(batch, timeout=10), "contributions")
    for i in (0, 7, 19):
        alone = infer_request(m, rows[i : i + 1]).to_grpc()
        alone.outputs.add(name="contributions")
        assert np.array_equal(
            _output(await stub.ModelInfer(alone, timeout=10), "contributions")[0], together[i]
        )


@pytest.mark.parametrize("served", ["card-fraud-v1", "credit-risk-v1"])
async def test_from_score_explains_only_the_rows_scoring_at_least_it(
    served: str, stub: pb_grpc.GRPCInferenceServiceStub, manifests: dict[str, Manifest]
) -> None:
    """What the gateway asks for when approvals carry no reasons: the other rows cost nothing,
    and the rows explained have the very bits they have when every row is."""
    m = manifests[served]
    rows = sample_requests(m.name, 200, seed=23)
    request = infer_request(m, rows).to_grpc()
    for name in ("probabilities", "contributions"):
        request.outputs.add(name=name)
    every = await stub.ModelInfer(request, timeout=10)
    p = _output(every, "probabilities")[:, m.outputs.positive_class_index].astype(np.float64)
    threshold = float(np.quantile(p, 0.8))
    request.outputs[1].parameters["from_score"].string_param = repr(threshold)
    some = await stub.ModelInfer(request, timeout=10)
    chosen = p >= threshold
    assert 0 < chosen.sum() < len(rows)
    partial, full = _output(some, "contributions"), _output(every, "contributions")
    assert np.isnan(partial[~chosen]).all()
    assert np.array_equal(partial[chosen], full[chosen])
    assert some.parameters["contributions_base"] == every.parameters["contributions_base"]

    for bad in (1.5, -0.1):
        request.outputs[1].parameters["from_score"].string_param = repr(bad)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.ModelInfer(request, timeout=10)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "from_score" in str(refused.value.details())
    request.outputs[1].parameters["from_score"].string_param = "half"
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.ModelInfer(request, timeout=10)
    assert "must be a number" in str(refused.value.details())
