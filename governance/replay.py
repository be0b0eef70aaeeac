"""``scoregate lineage replay``: re-score a decision's stored inputs with the exact artifact.

The artifact is found in a model directory by the sha256 the decision recorded (and checked
again before it is loaded); the stored feature snapshot is fed to onnxruntime in this process as
the runtime feeds it (one [1, 1] input per feature: float32 for numbers and booleans, strings for
categories, through ``runtimes.graph.run_rows``, which scores a row the same whatever shared its
call); the score must equal the stored one bit for bit. A bit-for-bit claim also needs the same
scoring environment (onnxruntime version, execution provider, thread settings): the decision
records the runtime's, and replay names every difference from its own and claims no MATCH while
there is one. Exit 0 match, 1 mismatch, a different or unrecorded environment, or an artifact
not in the directory; 2 the store could not be asked.
"""

from __future__ import annotations

import argparse
import functools
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from governance.client import EXIT_NO, CliExit, call, fail
from governance.output import pairs
from lineage.v1 import lineage_pb2
from lineage.v1.record import FeatureScalar
from runtimes.manifest import (
    Manifest,
    ManifestError,
    absent_value,
    find_model_folders,
    read_manifest,
)

if TYPE_CHECKING:
    import onnxruntime as ort


@dataclass(frozen=True, slots=True)
class ReplayResult:
    stored_score: float
    replayed_score: float
    model: str
    folder: Path
    recorded_environment: str
    """The scoring environment the runtime reported when it scored ("" when none was)."""
    environment: str
    """This replay's scoring environment."""

    @property
    def score_equal(self) -> bool:
        return _bits(self.stored_score) == _bits(self.replayed_score)

    @property
    def environment_differences(self) -> list[str]:
        """One line per setting that differs ("" recorded: the runtime did not say)."""
        from runtimes.graph import parse_environment

        if not self.recorded_environment:
            return ["the scoring environment was not recorded (the server did not report it)"]
        recorded = parse_environment(self.recorded_environment)
        here = parse_environment(self.environment)
        return [
            f"{key}: recorded {recorded.get(key, '(none)')}, here {here.get(key, '(none)')}"
            for key in sorted(recorded.keys() | here.keys())
            if recorded.get(key) != here.get(key)
        ]

    @property
    def match(self) -> bool:
        return self.score_equal and not self.environment_differences


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

    from runtimes.graph import BYTES, input_specs, run_rows
    from runtimes.manifest import verify_artifact

    artifact = verify_artifact(folder, manifest)
    session = _session(str(artifact), manifest.artifact_sha256)
    feed: dict[str, np.ndarray] = {}
    for spec, feature in zip(input_specs(manifest.features), manifest.features, strict=True):
        value = features.get(spec.name)
        if value is None:
            if feature.required:
                raise ManifestError(f"the stored inputs lack feature {spec.name!r}")
            # An optional feature the request left out: the model was given what the gateway
            # sends for it (its default, or the graph's missing value).
            value = absent_value(feature)
        if spec.datatype == BYTES:
            feed[spec.name] = np.array([[str(value)]], dtype=object)
        else:
            feed[spec.name] = np.array([[float(value)]], dtype=np.float32)
    outputs = manifest.outputs
    (probabilities,) = run_rows(session, [outputs.probabilities], feed)
    return float(np.asarray(probabilities, dtype=np.float32)[0, outputs.positive_class_index])


@functools.lru_cache(maxsize=8)
def _session(artifact: str, sha256: str) -> ort.InferenceSession:
    """One session per artifact for a run replaying many decisions (keyed by digest too, so a
    file replaced on disk is opened afresh once verified)."""
    from runtimes.graph import open_session

    return open_session(artifact)


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
    from runtimes.graph import scoring_environment

    score = rescore(folder, manifest, stored_features(record))
    return ReplayResult(
        record.outputs.score,
        score,
        manifest.served_name,
        folder,
        record.model.scoring_environment,
        scoring_environment(),
    )


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
                ("scored in", result.recorded_environment or "(not recorded)"),
                ("replayed in", result.environment),
            ]
        )
    )
    differences = result.environment_differences
    if result.match:
        print("MATCH: the replayed score equals the stored score bit for bit\n")
        return 0
    for line in differences:
        print(f"environment differs: {line}")
    if result.score_equal:
        print(
            "NOT CONFIRMED: the scores are equal, but this replay does not run in the scoring "
            "environment the decision was made in, so equality is not guaranteed\n"
        )
    else:
        print("MISMATCH: the replayed score differs from the stored score\n")
    return EXIT_NO
