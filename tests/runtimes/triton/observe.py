"""Runs in its own venv (tritonclient only, no kserve): calls a runtime with NVIDIA's tritonclient
and prints, as one JSON object, what a Triton user would see. The test asserts on it.

Usage: python observe.py ADDRESS REQUEST.json, where REQUEST.json holds ``model``, ``version``
and ``inputs`` (name -> {"datatype": "FP32" | "BYTES", "values": [...]}, each [N, 1]).
"""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

UNKNOWN_VERSION = "999"


def error_of(call: Callable[[], object]) -> dict[str, str] | None:
    """The status and message a refused call raised, or None if it was answered."""
    try:
        call()
    except InferenceServerException as e:
        return {"status": str(e.status()), "message": str(e.message())}
    return None


def inputs_of(spec: dict[str, Any]) -> list[triton.InferInput]:
    tensors = []
    for name, tensor in spec.items():
        if tensor["datatype"] == "FP32":
            array = np.array([[v] for v in tensor["values"]], dtype=np.float32)
        else:
            array = np.array([[v.encode()] for v in tensor["values"]], dtype=np.object_)
        infer_input = triton.InferInput(name, list(array.shape), tensor["datatype"])
        infer_input.set_data_from_numpy(array)
        tensors.append(infer_input)
    return tensors


def outputs_of(result: triton.InferResult) -> dict[str, Any]:
    response = result.get_response(as_json=True)
    seen: dict[str, Any] = {
        "model_name": response["model_name"],
        "model_version": response["model_version"],
        "names": [o["name"] for o in response["outputs"]],
    }
    probabilities = result.as_numpy("probabilities")
    if probabilities is not None:
        seen["probabilities_f32"] = base64.b64encode(probabilities.astype("<f4").tobytes()).decode()
        seen["probabilities_shape"] = list(probabilities.shape)
    label = result.as_numpy("label")
    if label is not None:
        seen["label"] = label.tolist()
    return seen


def observe(address: str, request: dict[str, Any]) -> dict[str, Any]:
    client = triton.InferenceServerClient(address)
    model, version = request["model"], request["version"]
    inputs = inputs_of(request["inputs"])

    def infer(outputs: list[str] | None = None, asked: str = version) -> triton.InferResult:
        wanted = None if outputs is None else [triton.InferRequestedOutput(n) for n in outputs]
        return client.infer(model, inputs, model_version=asked, outputs=wanted)

    return {
        "server_metadata": client.get_server_metadata(as_json=True),
        "live": client.is_server_live(),
        "ready": client.is_server_ready(),
        "model_metadata": {
            asked: client.get_model_metadata(model, asked, as_json=True) for asked in ("", version)
        },
        "model_ready": {asked: client.is_model_ready(model, asked) for asked in ("", version)},
        "unknown_version": {
            "model_ready": error_of(lambda: client.is_model_ready(model, UNKNOWN_VERSION)),
            "model_metadata": error_of(lambda: client.get_model_metadata(model, UNKNOWN_VERSION)),
            "infer": error_of(lambda: infer(asked=UNKNOWN_VERSION)),
        },
        "infer_all": outputs_of(infer()),
        "infer_unversioned": outputs_of(infer(asked="")),
        "infer_label_only": outputs_of(infer(["label"])),
        "infer_unknown_output": error_of(lambda: infer(["label", "score"])),
        "infer_classification": error_of(
            lambda: client.infer(
                model, inputs, outputs=[triton.InferRequestedOutput("label", class_count=1)]
            )
        ),
    }


if __name__ == "__main__":
    address, path = sys.argv[1:]
    with open(path) as f:
        print(json.dumps(observe(address, json.load(f))))
