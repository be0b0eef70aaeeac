"""``scoregate lineage replay``: re-score a decision's stored inputs with the exact artifact.

The artifact is found in a model directory by the sha256 the decision recorded (and checked
again before it is loaded); the stored feature snapshot is fed to onnxruntime in this process as
the runtime feeds it (one [1, 1] input per feature: float32 for numbers and booleans, strings for
categories); the score must equal the stored one bit for bit. Exit 0 match, 1 mismatch (or the
artifact is not in the directory), 2 the store could not be asked.
"""

from __future__ import annotations

import argparse
import struct
from dataclasses import dataclass
from pathlib import Path

from governance.client import EXIT_NO, CliExit, call, fail
from governance.output import pairs
from lineage.v1 import lineage_pb2
from lineage.v1.record import FeatureScalar
from runtimes.manifest import Manifest, ManifestError, find_model_folders, read_manifest


@dataclass(frozen=True, slots=True)
class ReplayResult:
    stored_score: float
    replayed_score: float
    model: str
    folder: Path

    @property
    def match(self) -> bool:
        return _bits(self.stored_score) == _bits(self.replayed_score)


def _bits(value: float) -> bytes:
    return struct.pack("<d", value)


def find_artifact(model_dir: Path, artifact_sha256: str) -> tuple[Path, Manifest]:
    """The model folder whose manifest names this artifact; ManifestError when none does."""
    for folder in find_model_folders(model_dir):
        manifest = read_manifest(folder)
        if manifest.artifact_sha256 == artifact_sha256:
            return folder, manifest
    raise ManifestError(f"no model under {model_dir} has artifact sha256 {artifact_sha256}")


def rescore(folder: Path, manifest: Manifest, features: dict[str, FeatureScalar]) -> float:
    """The score the artifact gives the features, computed as the runtime computes it.

    onnxruntime is imported here, not at module import: the lineage CLI's other commands
    never load it.
    """
    import numpy as np
    import onnxruntime as ort

    from runtimes.graph import BYTES, input_specs, session_options
    from runtimes.manifest import verify_artifact

    artifact = verify_artifact(folder, manifest)
    session = ort.InferenceSession(
        str(artifact), sess_options=session_options(), providers=["CPUExecutionProvider"]
    )
    feed: dict[str, np.ndarray] = {}
    for spec in input_specs(manifest.features):
        if spec.name not in features:
            raise ManifestError(f"the stored inputs lack feature {spec.name!r}")
        value = features[spec.name]
        if spec.datatype == BYTES:
            feed[spec.name] = np.array([[str(value)]], dtype=object)
        else:
            feed[spec.name] = np.array([[float(value)]], dtype=np.float32)
    outputs = manifest.outputs
    _, probabilities = session.run([outputs.label, outputs.probabilities], feed)
    return float(np.asarray(probabilities, dtype=np.float32)[0, outputs.positive_class_index])


def stored_features(record: lineage_pb2.DecisionRecord) -> dict[str, FeatureScalar]:
    features: dict[str, FeatureScalar] = {}
    for name, value in record.inputs.features.items():
        kind = value.WhichOneof("kind")
        if kind == "bool_value":
            features[name] = value.bool_value
        elif kind == "string_value":
            features[name] = value.string_value
        elif kind == "number_value":
            features[name] = value.number_value
    return features


def replay(record: lineage_pb2.DecisionRecord, model_dir: Path) -> ReplayResult:
    folder, manifest = find_artifact(model_dir, record.model.artifact_sha256)
    score = rescore(folder, manifest, stored_features(record))
    return ReplayResult(record.outputs.score, score, manifest.served_name, folder)


def replay_main(argv: list[str], prog: str = "scoregate lineage replay") -> int:
    parser = argparse.ArgumentParser(
        prog=prog, description="Re-score a decision with its exact artifact; compare bit for bit."
    )
    parser.add_argument("decision_id", nargs="+", help="one or more decision ids")
    parser.add_argument("--lineage", required=True, metavar="HOST:PORT", help="lineage store")
    parser.add_argument("--model-dir", required=True, type=Path, help="model repository root")
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args(argv)
    worst = 0
    for decision_id in args.decision_id:
        try:
            code = _replay_one(prog, decision_id, args.lineage, args.model_dir, args.timeout)
        except CliExit as e:
            code = e.code
        worst = max(worst, code)
    return worst


def _replay_one(prog: str, decision_id: str, lineage: str, model_dir: Path, timeout: float) -> int:
    request = lineage_pb2.GetDecisionRequest(decision_id=decision_id)
    record = call(prog, lineage, lambda s: s.GetDecision(request, timeout=timeout))
    try:
        result = replay(record, model_dir)
    except ManifestError as e:
        raise fail(prog, f"{record.decision_id}: {e}") from None
    print(
        pairs(
            [
                ("decision", record.decision_id),
                ("model", f"{result.model}  ({result.folder})"),
                ("artifact sha256", record.model.artifact_sha256),
                ("stored score", repr(result.stored_score)),
                ("replayed score", repr(result.replayed_score)),
            ]
        )
    )
    if result.match:
        print("MATCH: the replayed score equals the stored score bit for bit\n")
        return 0
    print("MISMATCH: the replayed score differs from the stored score\n")
    return EXIT_NO
