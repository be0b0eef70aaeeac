"""NVIDIA's tritonclient against the real runtime: metadata, versions, requested outputs, scores.

tritonclient runs in a venv and a process of its own (tests/support/client_venv.py): it and kserve
register the same protobuf package, so they cannot share this interpreter. Its script
(triton/observe.py) only reports what tritonclient sees; the assertions are here.
"""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support.client_venv import ClientVenvError, client_venv

from loadtests.local.topology import ManagedProcess
from runtimes.graph import open_session, run_rows
from runtimes.manifest import ARTIFACT_FILE, CategoryFeature, Manifest
from runtimes.training.datasets import sample_requests

HERE = Path(__file__).resolve().parent / "triton"
SERVED = ("card-fraud-v1", "card-fraud-v2", "churn-v1", "credit-risk-v1", "trade-anomaly-v1")
ROWS = 64


@pytest.fixture(scope="module")
def triton_python() -> Path:
    try:
        return client_venv("tritonclient-venv", HERE / "requirements.txt")
    except ClientVenvError as e:
        pytest.fail(f"cannot build the tritonclient venv: {e}")


def rows_of(m: Manifest) -> list[dict[str, Any]]:
    return [dict(row) for row in sample_requests(m.name, ROWS, seed=202)]


def request_of(m: Manifest) -> dict[str, Any]:
    rows = rows_of(m)
    inputs = {
        f.name: {"datatype": "BYTES", "values": [str(r[f.name]) for r in rows]}
        if isinstance(f, CategoryFeature)
        else {"datatype": "FP32", "values": [float(r[f.name]) for r in rows]}
        for f in m.features
    }
    return {"model": m.served_name, "version": m.version, "inputs": inputs}


def in_process_probabilities(
    m: Manifest, model_dir: Path, output: str = "probabilities"
) -> np.ndarray:
    rows = rows_of(m)
    feed = {
        f.name: np.array([[r[f.name]] for r in rows], dtype=object)
        if isinstance(f, CategoryFeature)
        else np.array([[float(r[f.name])] for r in rows], dtype=np.float32)
        for f in m.features
    }
    session = open_session(str(model_dir / m.name / m.version / ARTIFACT_FILE))
    (scores,) = run_rows(session, [output], feed)
    return scores


@pytest.fixture(scope="module", params=SERVED)
def seen(
    request: pytest.FixtureRequest,
    triton_python: Path,
    runtime: ManagedProcess,
    manifests: dict[str, Manifest],
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Manifest, dict[str, Any]]:
    """What tritonclient saw of one served model, from its own process."""
    m = manifests[request.param]
    path = tmp_path_factory.mktemp("tritonclient") / "request.json"
    path.write_text(json.dumps(request_of(m)))
    done = subprocess.run(
        [str(triton_python), str(HERE / "observe.py"), runtime.address, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return m, json.loads(done.stdout)


def probabilities_of(output: dict[str, Any]) -> np.ndarray:
    raw = base64.b64decode(output["probabilities_f32"])
    return np.frombuffer(raw, dtype="<f4").reshape(output["probabilities_shape"])


def test_server_metadata_and_health(seen: tuple[Manifest, dict[str, Any]]) -> None:
    _, got = seen
    assert got["live"] and got["ready"]
    assert got["server_metadata"]["name"] == "kserve"
    assert got["server_metadata"].get("extensions", []) == []


def test_model_metadata_names_platform_versions_and_the_schema(
    seen: tuple[Manifest, dict[str, Any]],
) -> None:
    m, got = seen
    inputs = [
        {"name": f.name, "datatype": "BYTES" if isinstance(f, CategoryFeature) else "FP32"}
        for f in m.features
    ]
    for asked in ("", m.version):
        meta = got["model_metadata"][asked]
        assert meta["name"] == m.served_name
        assert meta["platform"] == "onnxruntime_onnx"
        assert meta["versions"] == [m.version]
        assert [{"name": i["name"], "datatype": i["datatype"]} for i in meta["inputs"]] == inputs
        assert [i["shape"] for i in meta["inputs"]] == [["-1", "1"]] * len(inputs)
        assert {o["name"] for o in meta["outputs"]} == {"probabilities", "label", "contributions"}


def test_the_served_version_is_ready_and_an_unknown_one_not_found(
    seen: tuple[Manifest, dict[str, Any]],
) -> None:
    m, got = seen
    assert got["model_ready"] == {"": True, m.version: True}
    for call, error in got["unknown_version"].items():
        assert error is not None, f"{call} for version 999 was answered"
        assert error["status"] == "StatusCode.NOT_FOUND", call
        assert error["message"] == (
            f"model '{m.served_name}' has no version '999'; it serves version '{m.version}'"
        )


def test_infer_equals_onnxruntime_in_process(
    seen: tuple[Manifest, dict[str, Any]], model_dir: Path
) -> None:
    m, got = seen
    expected = in_process_probabilities(m, model_dir)
    for answer in (got["infer_all"], got["infer_unversioned"]):
        assert answer["model_name"] == m.served_name and answer["model_version"] == m.version
        assert answer["names"] == ["probabilities", "label"]
        got_probabilities = probabilities_of(answer)
        assert got_probabilities.shape == (ROWS, 2)
        assert got_probabilities.tobytes() == expected.astype("<f4").tobytes()
        assert answer["label"] == in_process_probabilities(m, model_dir, "label").tolist()


def test_only_the_requested_outputs_and_unknown_ones_refused(
    seen: tuple[Manifest, dict[str, Any]],
) -> None:
    _, got = seen
    label_only = got["infer_label_only"]
    assert label_only["names"] == ["label"] and "probabilities_f32" not in label_only
    assert label_only["label"] == got["infer_all"]["label"]
    unknown = got["infer_unknown_output"]
    assert unknown is not None and unknown["status"] == "StatusCode.INVALID_ARGUMENT"
    assert "requested output 'score' does not exist" in unknown["message"]
    classification = got["infer_classification"]
    assert classification is not None
    assert classification["status"] == "StatusCode.INVALID_ARGUMENT"
    assert "parameter 'classification'" in classification["message"]
