"""OnnxModel in process: idempotent load, refusals at load, and the error tree's status codes."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from kserve.errors import InvalidInput

from runtimes.errors import InvalidTensor, ModelLoadError, RuntimeServingError
from runtimes.manifest import Manifest, NumberFeature
from runtimes.onnx_model import OnnxModel


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (RuntimeServingError("x"), grpc.StatusCode.INTERNAL),
        (ModelLoadError("x"), grpc.StatusCode.FAILED_PRECONDITION),
        (InvalidTensor("x"), grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
def test_every_error_carries_its_status(error: RuntimeServingError, code: grpc.StatusCode) -> None:
    assert error.code == code and str(error) == "x"


def test_invalid_tensor_is_what_kserve_answers_invalid_argument_for() -> None:
    # KServe's interceptor maps InvalidInput to INVALID_ARGUMENT with its reason.
    assert isinstance(InvalidTensor("input 'a' is missing"), InvalidInput)
    assert InvalidTensor("input 'a' is missing").reason == "input 'a' is missing"


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
