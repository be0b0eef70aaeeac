"""OIP v2 tensors <-> the ONNX graph's feed, checked against the manifest's features.

The graph takes one [N, 1] input per feature: FP32 for numbers and booleans, BYTES (strings) for
categories. Requests may carry typed ``contents`` or ``raw_input_contents``; KServe's InferInput
decodes both. A request may name the outputs it wants (OIP v2 ``outputs``); none named means all.
Every rejection names the offending tensor.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from kserve.protocol.infer_type import InferInput, InferOutput, InferRequest, RequestedOutput

from oip.v2.parameters import CONTRIBUTIONS_FROM_SCORE_PARAMETER
from runtimes.errors import InvalidTensor
from runtimes.graph import CONTRIBUTIONS, FP32, INT64, OUTPUT_METADATA, InputSpec
from runtimes.manifest import MISSING_CATEGORY

_MISSING_CATEGORY = frozenset({MISSING_CATEGORY})
OUTPUT_NAMES: tuple[str, ...] = tuple(str(output["name"]) for output in OUTPUT_METADATA)
# KServe's REST decoding reads ``binary_data`` itself; any other output parameter asks for an
# extension (Triton's ``classification``, shared memory) this runtime does not implement.
_OUTPUT_PARAMETERS = frozenset({"binary_data"})
_CONTRIBUTIONS_PARAMETERS = _OUTPUT_PARAMETERS | {CONTRIBUTIONS_FROM_SCORE_PARAMETER}


def _as_array(tensor: InferInput, spec: InputSpec) -> np.ndarray:
    if tensor.datatype != spec.datatype:
        raise InvalidTensor(
            f"input '{spec.name}' has datatype {tensor.datatype}; expected {spec.datatype}"
        )
    shape = list(tensor.shape)
    if len(shape) != 2 or shape[1] != 1 or shape[0] < 1:
        raise InvalidTensor(f"input '{spec.name}' has shape {shape}; expected [N, 1] with N >= 1")
    try:
        array = tensor.as_numpy()
    except (ValueError, TypeError, UnicodeDecodeError) as e:
        raise InvalidTensor(f"input '{spec.name}': data does not match shape {shape}") from e
    if spec.datatype == FP32:
        # NaN is a declared-missing feature's missing value; infinity is nobody's.
        if not np.isfinite(array).all() and (not spec.missing_allowed or np.isinf(array).any()):
            raise InvalidTensor(f"input '{spec.name}' holds NaN or infinity")
        return np.ascontiguousarray(array, dtype=np.float32)
    return _strings(array, spec)


def _strings(array: np.ndarray, spec: InputSpec) -> np.ndarray:
    try:
        values = [v.decode() if isinstance(v, bytes) else str(v) for v in array.ravel()]
    except UnicodeDecodeError as e:
        raise InvalidTensor(f"input '{spec.name}' is not valid UTF-8") from e
    if spec.categories is not None:
        unknown = sorted(set(values) - spec.categories - _missing(spec))
        if unknown:
            raise InvalidTensor(
                f"input '{spec.name}' has unknown categories {unknown[:3]}; "
                f"expected one of {sorted(spec.categories)}"
            )
    return np.array(values, dtype=object).reshape(-1, 1)


def _missing(spec: InputSpec) -> frozenset[str]:
    return _MISSING_CATEGORY if spec.missing_allowed else frozenset()


def decode_request(request: InferRequest, specs: Sequence[InputSpec]) -> dict[str, np.ndarray]:
    """The graph feed for ``request``: every feature present, well-typed, same batch size."""
    given = {tensor.name: tensor for tensor in request.inputs}
    expected = {spec.name for spec in specs}
    unknown = sorted(set(given) - expected)
    if unknown:
        raise InvalidTensor(f"unknown input '{unknown[0]}'; expected {sorted(expected)}")
    feed: dict[str, np.ndarray] = {}
    rows: int | None = None
    for spec in specs:
        tensor = given.get(spec.name)
        if tensor is None:
            raise InvalidTensor(f"input '{spec.name}' is missing")
        array = _as_array(tensor, spec)
        if rows is None:
            rows = array.shape[0]
        elif array.shape[0] != rows:
            raise InvalidTensor(
                f"input '{spec.name}' has {array.shape[0]} rows; other inputs have {rows}"
            )
        feed[spec.name] = array
    return feed


def requested_outputs(
    requested: Sequence[RequestedOutput] | None, optional: Sequence[str] = ()
) -> tuple[str, ...]:
    """The output names to answer with, in the order asked; when none is asked, every output but
    the ``optional`` ones, which cost more than scoring and are given only when asked for."""
    if not requested:
        return OUTPUT_NAMES
    known = (*OUTPUT_NAMES, *optional)
    names: list[str] = []
    for output in requested:
        if output.name not in known:
            raise InvalidTensor(
                f"requested output '{output.name}' does not exist; outputs are {list(known)}"
            )
        if output.name in names:
            raise InvalidTensor(f"output '{output.name}' is requested more than once")
        allowed = _CONTRIBUTIONS_PARAMETERS if output.name == CONTRIBUTIONS else _OUTPUT_PARAMETERS
        unsupported = sorted(set(output.parameters or {}) - allowed)
        if unsupported:
            raise InvalidTensor(
                f"requested output '{output.name}' has parameter '{unsupported[0]}', "
                "which this runtime does not implement"
            )
        names.append(output.name)
    return tuple(names)


def contributions_from_score(requested: Sequence[RequestedOutput] | None) -> float:
    """The ``from_score`` of a requested ``contributions`` output: explain only rows scoring at
    least this (0: every row)."""
    for output in requested or ():
        if output.name == CONTRIBUTIONS and output.parameters:
            value = output.parameters.get(CONTRIBUTIONS_FROM_SCORE_PARAMETER)
            if value is None:
                return 0.0
            # A string (OIP v2's parameters have no float in KServe's protocol) or a number.
            where = f"output '{CONTRIBUTIONS}': parameter '{CONTRIBUTIONS_FROM_SCORE_PARAMETER}'"
            try:
                if isinstance(value, bool):
                    raise ValueError(value)
                score = float(value)
            except (TypeError, ValueError):
                raise InvalidTensor(f"{where} must be a number, not {value!r}") from None
            if not 0.0 <= score <= 1.0:
                raise InvalidTensor(f"{where} is {value}; a score is in [0, 1]")
            return score
    return 0.0


def encode_outputs(
    probabilities: np.ndarray,
    labels: np.ndarray,
    names: Sequence[str] = OUTPUT_NAMES,
    contributions: np.ndarray | None = None,
) -> list[InferOutput]:
    """The outputs in ``names``, sent as raw bytes (exact floats): ``probabilities`` FP32 [N, 2],
    ``label`` INT64 [N], and ``contributions`` FP32 [N, F] when computed."""
    probabilities = np.ascontiguousarray(probabilities, dtype=np.float32)
    labels = np.ascontiguousarray(labels, dtype=np.int64).reshape(-1)
    tensors = {"probabilities": (FP32, probabilities), "label": (INT64, labels)}
    if contributions is not None:
        tensors[CONTRIBUTIONS] = (FP32, np.ascontiguousarray(contributions, dtype=np.float32))
    outputs = []
    for name in names:
        datatype, data = tensors[name]
        outputs.append(InferOutput(name, list(data.shape), datatype, data))
    return outputs
