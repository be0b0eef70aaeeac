"""The gateway's side of the contributions output: what it asks the runtime for, and what it
refuses in the answer (a runtime that explains wrongly is a runtime whose score is not used)."""

from __future__ import annotations

import dataclasses
import math
import struct
from pathlib import Path

import grpc
import numpy as np
import pytest

from gateway.errors import InvalidModelOutput
from gateway.runtime_client.oip import BatchEncoder, RequestEncoder, parse_answers
from gateway.runtime_client.targets import ModelTarget
from loadtests.local.topology import ManagedProcess
from oip.v2 import grpc_predict_v2_pb2 as pb
from oip.v2.parameters import CONTRIBUTIONS_BASE_PARAMETER, MODEL_INFER
from runtimes.explain import Explainer
from runtimes.manifest import Manifest, find_model_folders, read_manifest
from runtimes.reasons import ReasonRanker, read_catalogue
from runtimes.training.datasets import sample_requests


def _target(model_dir: Path, name: str) -> tuple[ModelTarget, Path]:
    for folder in find_model_folders(model_dir):
        m = read_manifest(folder)
        if (m.name, m.version) == (name, "1"):
            catalogue = read_catalogue(folder, m, m.reason_catalogue_sha256)
            return ModelTarget(name, "1", ("runtime",), m, (), ReasonRanker(m, catalogue)), folder
    raise AssertionError(name)


def _rows(manifest: Manifest, n: int) -> list[dict[str, float | str | bool]]:
    rows = sample_requests(manifest.name, n, seed=4)
    return [{k: v if isinstance(v, bool | str) else float(v) for k, v in r.items()} for r in rows]


async def _infer(runtime: ManagedProcess, payload: bytes) -> bytes:
    async with grpc.aio.insecure_channel(runtime.address) as channel:
        data: bytes = await channel.unary_unary(MODEL_INFER)(payload, timeout=10)
        return data


def test_an_explaining_request_asks_for_the_probabilities_and_the_contributions(
    manifests: dict[tuple[str, str], Manifest],
) -> None:
    manifest = manifests[("credit-risk", "1")]
    row = _rows(manifest, 1)[0]
    plain = pb.ModelInferRequest.FromString(RequestEncoder(manifest).encode(row))
    asking = pb.ModelInferRequest.FromString(RequestEncoder(manifest, None, True).encode(row))
    assert [o.name for o in plain.outputs] == []
    assert [o.name for o in asking.outputs] == [manifest.outputs.probabilities, "contributions"]
    batch = pb.ModelInferRequest.FromString(
        BatchEncoder(manifest, None, True).encode(_rows(manifest, 3))
    )
    assert [o.name for o in batch.outputs] == [manifest.outputs.probabilities, "contributions"]
    assert list(asking.inputs) == list(plain.inputs)


@pytest.mark.parametrize("name", ["credit-risk", "card-fraud", "churn", "trade-anomaly"])
async def test_the_runtimes_contributions_reach_each_answer_exactly(
    runtime: ManagedProcess, model_dir: Path, name: str
) -> None:
    target, folder = _target(model_dir, name)
    manifest = target.manifest
    rows = _rows(manifest, 7)
    data = await _infer(runtime, BatchEncoder(manifest, None, True).encode(rows))
    answers = parse_answers(target, "runtime", data, len(rows), explain=True)

    # What the runtime computed, recomputed here from the artifact: the same FP32 values.
    explainer = Explainer.for_artifact(folder / manifest.artifact, manifest)
    request = pb.ModelInferRequest.FromString(BatchEncoder(manifest).encode(rows))
    feed = _feed(request, manifest)
    expected = explainer.contributions(feed)
    for i, answer in enumerate(answers):
        assert answer.contributions is not None and answer.ranker is target.reasons
        assert answer.contributions == [float(x) for x in expected.values[i].astype("float32")]
        assert answer.contributions_base == expected.base_value


def _feed(request: pb.ModelInferRequest, manifest: Manifest) -> dict[str, np.ndarray]:
    """The graph's inputs, decoded from the request's raw tensors as the runtime decodes them."""
    feed: dict[str, np.ndarray] = {}
    for tensor, raw in zip(request.inputs, request.raw_input_contents, strict=True):
        rows = tensor.shape[0]
        if tensor.datatype == "FP32":
            feed[tensor.name] = np.frombuffer(raw, dtype="<f4").reshape(rows, 1)
        else:
            values, at = [], 0
            while at < len(raw):
                (size,) = struct.unpack_from("<I", raw, at)
                values.append(raw[at + 4 : at + 4 + size].decode())
                at += 4 + size
            feed[tensor.name] = np.array(values, dtype=object).reshape(rows, 1)
    assert set(feed) == {f.name for f in manifest.features}
    return feed


def _tampered(data: bytes, change: str) -> bytes:
    response = pb.ModelInferResponse.FromString(data)
    index = [o.name for o in response.outputs].index("contributions")
    if change == "no output":
        del response.outputs[index]
        del response.raw_output_contents[index]
    elif change == "short":
        response.raw_output_contents[index] = response.raw_output_contents[index][:-4]
    elif change == "nan":
        raw = response.raw_output_contents[index]
        response.raw_output_contents[index] = struct.pack("<f", math.nan) + raw[4:]
    elif change == "no base":
        del response.parameters[CONTRIBUTIONS_BASE_PARAMETER]
    elif change == "bad base":
        response.parameters[CONTRIBUTIONS_BASE_PARAMETER].string_param = "inf"
    return bytes(response.SerializeToString())


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ("no output", "no 'contributions' output"),
        ("short", "contributions for 3 rows"),
        ("nan", "not finite"),
        ("no base", "contributions_base"),
        ("bad base", "contributions_base"),
    ],
)
async def test_an_answer_with_unusable_contributions_is_refused(
    runtime: ManagedProcess, model_dir: Path, change: str, named: str
) -> None:
    target, _ = _target(model_dir, "credit-risk")
    rows = _rows(target.manifest, 3)
    data = await _infer(runtime, BatchEncoder(target.manifest, None, True).encode(rows))
    assert len(parse_answers(target, "runtime", data, 3, explain=True)) == 3
    with pytest.raises(InvalidModelOutput, match=named):
        parse_answers(target, "runtime", _tampered(data, change), 3, explain=True)


async def test_rows_below_the_reasons_threshold_are_not_explained(
    runtime: ManagedProcess, model_dir: Path
) -> None:
    """Approvals carry no reasons by default, so the gateway asks the runtime to explain only
    rows scoring at least the decision points' lowest review threshold."""
    target, _ = _target(model_dir, "credit-risk")
    rows = _rows(target.manifest, 40)
    plain = parse_answers(
        target, "runtime", await _infer(runtime, BatchEncoder(target.manifest).encode(rows)), 40
    )
    scores = sorted(a.score for a in plain)
    threshold = scores[30]
    target = dataclasses.replace(target, explain_from_score=threshold)
    encoder = BatchEncoder(target.manifest, None, True, threshold)
    data = await _infer(runtime, encoder.encode(rows))
    answers = parse_answers(target, "runtime", data, 40, explain=True)
    for answer in answers:
        explained = answer.contributions is not None
        assert explained == (answer.score >= threshold), answer.score
    assert sum(a.contributions is not None for a in answers) == 10
    # A runtime that leaves a row scoring above the threshold unexplained is not believed.
    lower = dataclasses.replace(target, explain_from_score=scores[0])
    with pytest.raises(InvalidModelOutput, match="not finite for row"):
        parse_answers(lower, "runtime", data, 40, explain=True)
