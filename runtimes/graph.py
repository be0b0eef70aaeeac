"""The ONNX graph's side of the runtime contract, free of KServe: its inputs, its outputs, and
the session options a served artifact runs with.

The graph takes one [N, 1] input per feature: FP32 for numbers and booleans, BYTES (strings) for
categories. Replay (``scoregate lineage replay``) opens the artifact with the same options, so a
replayed score is computed exactly as the runtime computed it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import onnxruntime as ort

from runtimes.manifest import CategoryFeature, Feature

FP32 = "FP32"
BYTES = "BYTES"
INT64 = "INT64"


@dataclass(frozen=True)
class InputSpec:
    """What the graph accepts for one feature."""

    name: str
    datatype: str
    categories: frozenset[str] | None = None

    @property
    def onnx_type(self) -> str:
        return "tensor(string)" if self.datatype == BYTES else "tensor(float)"

    def metadata(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": [-1, 1]}


def input_specs(features: Sequence[Feature]) -> tuple[InputSpec, ...]:
    return tuple(
        InputSpec(f.name, BYTES, frozenset(f.categories))
        if isinstance(f, CategoryFeature)
        else InputSpec(f.name, FP32)
        for f in features
    )


OUTPUT_METADATA: list[dict[str, Any]] = [
    {"name": "probabilities", "datatype": FP32, "shape": [-1, 2]},
    {"name": "label", "datatype": INT64, "shape": [-1]},
]


def session_options() -> ort.SessionOptions:
    # Small tabular graphs: one thread per run is fastest, and concurrency comes from running
    # several requests at once on the executor instead of splitting one across cores.
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return options
