"""OnnxModel in process: idempotent load, refusals at load, and the error tree's status codes."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
from kserve.errors import InvalidInput, ModelNotFound
from kserve.protocol.infer_type import InferRequest
from support.oip import infer_request

from runtimes.errors import (
    InvalidTensor,
    ModelLoadError,
    RuntimeServingError,
    UnknownVersion,
    Unsupported,
)
from runtimes.manifest import Manifest, NumberFeature
from runtimes.onnx_model import OnnxModel
from runtimes.training.datasets import sample_requests


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (RuntimeServingError("x"), grpc.StatusCode.INTERNAL),
        (ModelLoadError("x"), grpc.StatusCode.FAILED_PRECONDITION),
        (InvalidTensor("x"), grpc.StatusCode.INVALID_ARGUMENT),
        (Unsupported("x"), grpc.StatusCode.UNIMPLEMENTED),
    ],
)
def test_every_error_carries_its_status(error: RuntimeServingError, code: grpc.StatusCode) -> None:
    assert error.code == code and str(error) == "x"


def test_invalid_tensor_is_what_kserve_answers_invalid_argument_for() -> None:
    # KServe's interceptor maps InvalidInput to INVALID_ARGUMENT with its reason.
    assert isinstance(InvalidTensor("input 'a' is missing"), InvalidInput)
    assert InvalidTensor("input 'a' is missing").reason == "input 'a' is missing"


def test_the_other_caller_errors_are_what_kserve_answers_their_status_for() -> None:
    # KServe's interceptor: ModelNotFound -> NOT_FOUND, NotImplementedError -> UNIMPLEMENTED,
    # each with the error's reason.
    unknown = UnknownVersion("m-v1", "9", "1")
    assert isinstance(unknown, ModelNotFound) and unknown.code == grpc.StatusCode.NOT_FOUND
    assert (
        unknown.reason == str(unknown) == "model 'm-v1' has no version '9'; it serves version '1'"
    )
    assert isinstance(Unsupported("x"), NotImplementedError) and Unsupported("x").reason == "x"


def test_load_is_idempotent(model_dir: Path, manifests: dict[str, Manifest]) -> None:
    with ThreadPoolExecutor(1) as executor:
        model = OnnxModel.from_folder(model_dir / "card-fraud" / "1", executor, "test:1")
        assert model.name == "card-fraud-v1" and not model.ready
        assert model.load() and model.ready
        session = model._session
        assert model.load() and model._session is session


def test_load_refuses_a_graph_that_does_not_take_the_manifests_features(
    model_dir: Path, manifests: dict[str, Manifest]
) -> None:
    m = manifests["credit-risk-v1"]
    renamed = (NumberFeature(name="salary", min=0, max=1), *m.features[1:])
    wrong = m.model_copy(update={"features": renamed})
    with ThreadPoolExecutor(1) as executor:
        model = OnnxModel(model_dir / "credit-risk" / "1", wrong, executor, "test:1")
        with pytest.raises(ModelLoadError, match="salary") as caught:
            model.load()
    assert not model.ready and "credit-risk-v1" in str(caught.value)


def test_load_refuses_a_missing_manifest(tmp_path: Path) -> None:
    with ThreadPoolExecutor(1) as executor, pytest.raises(ModelLoadError, match="no manifest"):
        OnnxModel.from_folder(tmp_path, executor, "test:1")


def _request(m: Manifest, rows: int) -> InferRequest:
    return infer_request(m, sample_requests(m.name, rows, seed=5), binary=False)


async def test_small_calls_run_on_the_loop_and_larger_ones_on_the_threads(
    model_dir: Path, manifests: dict[str, Manifest]
) -> None:
    m = manifests["card-fraud-v1"]
    with ThreadPoolExecutor(1) as executor:
        on_threads = OnnxModel.from_folder(model_dir / "card-fraud" / "1", executor, "test:1")
        on_threads.load()
        expected = await on_threads.predict(_request(m, 16))
    # The executor is shut down: a call that still needs it fails.
    inline = OnnxModel.from_folder(model_dir / "card-fraud" / "1", executor, "test:1", 16)
    inline.load()
    got = await inline.predict(_request(m, 16))
    probabilities = got.get_output_by_name("probabilities")
    assert probabilities is not None
    reference = expected.get_output_by_name("probabilities")
    assert reference is not None
    np.testing.assert_array_equal(probabilities.as_numpy(), reference.as_numpy())
    with pytest.raises(RuntimeError, match="shutdown"):
        await inline.predict(_request(m, 17))
