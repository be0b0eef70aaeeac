"""OIP v2 inference requests as a client builds them, for tests of the runtime."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from kserve.protocol.infer_type import InferInput, InferRequest

from runtimes.manifest import CategoryFeature, Manifest
from runtimes.training.datasets import FeatureValue

Row = dict[str, FeatureValue]


def infer_request(
    m: Manifest, rows: Sequence[Row], binary: bool = True, skip: str = ""
) -> InferRequest:
    """One [N, 1] input per feature of ``m`` (all but ``skip``): FP32 numbers, BYTES categories."""
    inputs = []
    for f in m.features:
        if f.name == skip:
            continue
        if isinstance(f, CategoryFeature):
            array = np.array([[row[f.name]] for row in rows], dtype=object)
            tensor = InferInput(f.name, list(array.shape), "BYTES")
        else:
            array = np.array([[float(row[f.name])] for row in rows], dtype=np.float32)
            tensor = InferInput(f.name, list(array.shape), "FP32")
        tensor.set_data_from_numpy(array, binary_data=binary)
        inputs.append(tensor)
    return InferRequest(model_name=m.served_name, infer_inputs=inputs, request_id="t-1")
