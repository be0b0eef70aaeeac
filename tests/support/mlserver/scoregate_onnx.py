"""An MLServer runtime for scoregate's demo models: model.onnx run with onnxruntime.

It runs inside MLServer's own interpreter (tests/support/mlserver_env.py builds it), so it imports
nothing of scoregate. MLServer ships no ONNX runtime; this is the smallest one that serves the
demo graphs as scoregate's runtime does (one thread, sequential, CPU), so the two give the same
floats. Its metadata is MLServer's own (the model settings' ``versions``, ``inputs`` and
``outputs``), as a stock runtime's is. Two things it adds, both from its model settings:

- it refuses to load an artifact whose sha256 differs from an ``artifact_sha256:<hex>`` entry of
  the settings' ``versions``, so what the metadata names is what it loaded;
- with ``parameters.extra.report_artifact_sha256: true`` it names that sha256 on every answer
  (the ``artifact_sha256`` response parameter scoregate's runtime sends).
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.errors import InferenceError
from mlserver.types import InferenceRequest, InferenceResponse, Parameters
from mlserver.utils import get_model_uri

DIGEST_PREFIX = "artifact_sha256:"


class ScoregateOnnx(MLModel):
    async def load(self) -> bool:
        uri = await get_model_uri(self._settings, wellknown_filenames=["model.onnx"])
        artifact = await asyncio.to_thread(Path(uri).read_bytes)
        digest = hashlib.sha256(artifact).hexdigest()
        versions = self._settings.versions
        declared = [v[len(DIGEST_PREFIX) :] for v in versions if v.startswith(DIGEST_PREFIX)]
        if declared and declared != [digest]:
            raise RuntimeError(f"{uri} has sha256 {digest}, the model settings declare {declared}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self._session = ort.InferenceSession(artifact, options, providers=["CPUExecutionProvider"])
        self._inputs = {i.name: i.type for i in self._session.get_inputs()}
        extra: dict[str, Any] = {}
        if self._settings.parameters is not None and self._settings.parameters.extra:
            extra = self._settings.parameters.extra
        self._digest = digest if extra.get("report_artifact_sha256") else ""
        self.ready = True
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        feeds: dict[str, np.ndarray] = {}
        for tensor in payload.inputs:
            if tensor.name not in self._inputs:
                raise InferenceError(f"unknown input {tensor.name!r}")
            if tensor.datatype == "BYTES":
                # One string per element (NumpyCodec would read a bytes element as its bytes).
                flat = [v.decode() if isinstance(v, bytes) else str(v) for v in tensor.data.root]
                array = np.array(flat, dtype=object).reshape(tensor.shape)
            else:
                array = NumpyCodec.decode_input(tensor).astype(np.float32)
            feeds[tensor.name] = array
        missing = sorted(set(self._inputs) - set(feeds))
        if missing:
            raise InferenceError(f"missing inputs {missing}")
        names = [o.name for o in self._session.get_outputs()]
        rows = len(next(iter(feeds.values())))
        if rows == 1:
            # As scoregate's runtime: a row alone is run as two, where onnxruntime's float32
            # rounding does not depend on how many rows share the run (runtimes/graph.py).
            feeds = {name: np.concatenate((column, column)) for name, column in feeds.items()}
        # Off the event loop, as any runtime should infer.
        results = await asyncio.to_thread(self._session.run, names, feeds)
        results = [np.asarray(x)[:rows] for x in results]
        outputs = []
        for name, value in zip(names, results, strict=True):
            array = np.asarray(value)
            if array.dtype.kind in "iu":
                array = array.astype(np.int64)
            outputs.append(NumpyCodec.encode_output(name, array))
        parameters = Parameters(artifact_sha256=self._digest) if self._digest else None
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            id=payload.id,
            outputs=outputs,
            parameters=parameters,
        )
