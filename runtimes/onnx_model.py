"""One model version served by KServe: an ONNX artifact run by onnxruntime.

Calls of up to ``inline_max_rows`` rows run on the event loop itself: a small tabular model
scores a few rows in less time than handing the work to a thread and back costs
(docs/performance-log.md). Larger
batches run on the executor, so the loop keeps serving while they do.

``load()`` verifies the artifact's sha256 against the manifest before onnxruntime sees it, and
checks the graph takes exactly the manifest's features; it is idempotent. Every response names
the model version, the artifact digest, the runtime instance and the scoring environment
(``runtimes.graph``), so the gateway records what actually answered and replay can tell whether
it computes in the same one.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from kserve import Model
from kserve.protocol.infer_type import InferRequest, InferResponse

from oip.v2.parameters import (
    ARTIFACT_SHA256_PARAMETER,
    CONTRIBUTIONS_BASE_PARAMETER,
    RUNTIME_INSTANCE_PARAMETER,
    SCORING_ENVIRONMENT_PARAMETER,
)
from runtimes.errors import InvalidTensor, ModelLoadError, UnknownVersion
from runtimes.explain.errors import UnexplainableModel
from runtimes.explain.explainer import Contributions, Explainer
from runtimes.graph import (
    CONTRIBUTIONS,
    OUTPUT_METADATA,
    input_specs,
    open_session,
    run_rows,
    scoring_environment,
)
from runtimes.manifest import Manifest, ManifestError, read_manifest, verify_artifact
from runtimes.reasons import read_catalogue
from runtimes.tensors import (
    contributions_from_score,
    decode_request,
    encode_outputs,
    requested_outputs,
)

# Triton's name for an ONNX model run by onnxruntime; OIP v2 leaves the platform's naming open.
PLATFORM = "onnxruntime_onnx"


log = logging.getLogger("scoregate.runtime")


def runtime_instance() -> str:
    """``hostname:pid``: tells replicas (pods) apart in decision records."""
    return f"{socket.gethostname()}:{os.getpid()}"


class OnnxModel(Model):  # type: ignore[misc]
    """A KServe model for one version folder (``model.onnx`` + ``manifest.json``)."""

    def __init__(
        self,
        folder: Path,
        manifest: Manifest,
        executor: Executor,
        instance: str,
        inline_max_rows: int = 0,
    ):
        super().__init__(manifest.served_name)
        self.folder = folder
        self.manifest = manifest
        self.instance = instance
        self._executor = executor
        self._inline_max_rows = inline_max_rows
        self._specs = input_specs(manifest.features)
        self._session: ort.InferenceSession | None = None
        self._environment = scoring_environment()
        self._explainer: Explainer | None = None
        self._optional_outputs: tuple[str, ...] = ()

    @classmethod
    def from_folder(
        cls, folder: Path, executor: Executor, instance: str, inline_max_rows: int = 0
    ) -> OnnxModel:
        try:
            manifest = read_manifest(folder)
        except ManifestError as e:
            raise ModelLoadError(str(e)) from e
        return cls(folder, manifest, executor, instance, inline_max_rows)

    def load(self) -> bool:
        if self._session is not None:
            self.ready = True
            return True
        try:
            artifact = verify_artifact(self.folder, self.manifest)
        except ManifestError as e:
            raise ModelLoadError(str(e)) from e
        session = open_session(str(artifact))
        self._check_graph(session)
        if self.manifest.reason_catalogue_sha256:
            try:
                read_catalogue(self.folder, self.manifest, self.manifest.reason_catalogue_sha256)
            except ManifestError as e:
                raise ModelLoadError(str(e)) from e
        self._explainer = self._explain(artifact)
        self._optional_outputs = (CONTRIBUTIONS,) if self._explainer is not None else ()
        self._session = session
        self.ready = True
        return True

    def _explain(self, artifact: Path) -> Explainer | None:
        """The artifact's explainer. A model with a reason catalogue promises reasons, so one
        that cannot be explained exactly is refused; any other is served without them."""
        try:
            return Explainer.for_artifact(artifact, self.manifest)
        except UnexplainableModel as e:
            if self.manifest.reason_catalogue_sha256:
                raise ModelLoadError(f"{self.folder}: {e}; it has a reason catalogue") from e
            log.warning("%s: served without contributions: %s", self.name, e)
            return None

    def _check_graph(self, session: ort.InferenceSession) -> None:
        graph = {i.name: i.type for i in session.get_inputs()}
        wanted = {spec.name: spec.onnx_type for spec in self._specs}
        if graph != wanted:
            raise ModelLoadError(
                f"{self.folder / self.manifest.artifact}: graph inputs {graph} do not match "
                f"the manifest's features {wanted} for {self.name}"
            )
        outputs = {o.name for o in session.get_outputs()}
        needed = {self.manifest.outputs.label, self.manifest.outputs.probabilities}
        if not needed <= outputs:
            raise ModelLoadError(
                f"{self.folder / self.manifest.artifact}: graph outputs {sorted(outputs)} "
                f"lack {sorted(needed - outputs)} for {self.name}"
            )

    def get_input_types(self) -> list[dict[str, Any]]:
        return [spec.metadata() for spec in self._specs]

    def get_output_types(self) -> list[dict[str, Any]]:
        if self._explainer is None:
            return OUTPUT_METADATA
        features = len(self.manifest.features)
        return [
            *OUTPUT_METADATA,
            {"name": CONTRIBUTIONS, "datatype": "FP32", "shape": [-1, features]},
        ]

    def check_version(self, version: str | None) -> None:
        """Refuses any ``model_version`` but the one served; an empty one means the served one."""
        if version and version != self.manifest.version:
            raise UnknownVersion(self.name, version, self.manifest.version)

    def _run(
        self, feed: dict[str, np.ndarray], explain: bool = False, from_score: float = 0.0
    ) -> tuple[np.ndarray, np.ndarray, Contributions | None]:
        if self._session is None:
            raise RuntimeError(f"{self.name} is not loaded")
        outputs = self.manifest.outputs
        labels, probabilities = run_rows(
            self._session, (outputs.label, outputs.probabilities), feed
        )
        if not explain or self._explainer is None:
            return probabilities, labels, None
        if from_score <= 0.0:
            return probabilities, labels, self._explainer.contributions(feed)
        # Compared in float64, as the gateway compares the score it decides on.
        scores = probabilities[:, outputs.positive_class_index].astype(np.float64)
        return (
            probabilities,
            labels,
            self._explainer.contributions_of_rows(feed, scores >= from_score),
        )

    async def predict(
        self,
        payload: InferRequest | dict[str, Any],
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> InferResponse:
        if not isinstance(payload, InferRequest):
            raise InvalidTensor(f"{self.name} speaks the Open Inference Protocol (v2) only")
        self.check_version(payload.model_version)
        wanted = requested_outputs(payload.request_outputs, self._optional_outputs)
        explain = CONTRIBUTIONS in wanted
        from_score = contributions_from_score(payload.request_outputs) if explain else 0.0
        feed = decode_request(payload, self._specs)
        if len(next(iter(feed.values()))) <= self._inline_max_rows:
            probabilities, labels, contributions = self._run(feed, explain, from_score)
        else:
            # onnxruntime releases the GIL while it runs, so the loop keeps serving meanwhile.
            loop = asyncio.get_running_loop()
            probabilities, labels, contributions = await loop.run_in_executor(
                self._executor, self._run, feed, explain, from_score
            )
        parameters: dict[str, str] = {
            ARTIFACT_SHA256_PARAMETER: self.manifest.artifact_sha256,
            RUNTIME_INSTANCE_PARAMETER: self.instance,
            SCORING_ENVIRONMENT_PARAMETER: self._environment,
        }
        if contributions is not None:
            # repr: the float64 exactly (KServe's parameters take no floats).
            parameters[CONTRIBUTIONS_BASE_PARAMETER] = repr(contributions.base_value)
        return InferResponse(
            response_id=payload.id or "",
            model_name=self.name,
            model_version=self.manifest.version,
            infer_outputs=encode_outputs(
                probabilities,
                labels,
                wanted,
                contributions.values if contributions is not None else None,
            ),
            from_grpc=payload.from_grpc,
            parameters=parameters,
        )

    def stop(self) -> None:
        self.ready = False
