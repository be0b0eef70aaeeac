"""``scoregate lineage replay``: re-score a decision's stored inputs with the exact artifact.

The artifact is found in a model directory by the sha256 the decision recorded (and checked
again before it is loaded); the stored feature snapshot is fed to onnxruntime in this process as
the runtime feeds it (one [1, 1] input per feature: float32 for numbers and booleans, strings for
categories, through ``runtimes.graph.run_rows``, which scores a row the same whatever shared its
call); the score must equal the stored one bit for bit. A bit-for-bit claim also needs the same
scoring environment (onnxruntime version, execution provider, thread settings): the decision
records the runtime's, and replay names every difference from its own and claims no MATCH while
there is one.

A decision with contributions has them re-derived from the same artifact (``runtimes.explain``,
cast to float32 as the runtime sends them) and compared bit for bit with the record's, base value
too; they are then ranked again into reasons through the catalogue in the model directory
(checked against the manifest's sha256, its version against the record's), as many as the record
says its decision point wanted, and the reasons compared exactly: rank, code, statement, feature
and contribution. Every difference is named and prevents MATCH.

Exit 0 match, 1 mismatch, a different or unrecorded environment, or an artifact not in the
directory; 2 the store could not be asked.
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
from governance.redaction_view import WITHHELD, withheld_features
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
    import numpy as np
    import onnxruntime as ort

    from runtimes.explain import Explainer


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
    reasons: ReasonsReplay | None = None
    """The contributions and reasons re-derived; None for a decision recorded without them."""

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
    def reason_differences(self) -> list[str]:
        return list(self.reasons.differences) if self.reasons is not None else []

    @property
    def match(self) -> bool:
        return self.score_equal and not self.environment_differences and not self.reason_differences


@dataclass(frozen=True, slots=True)
class ReasonsReplay:
    """A decision's contributions and reasons as replay re-derived them, and every way they
    differ from the recorded ones (empty: equal bit for bit)."""

    contributions: dict[str, float]
    base: float
    reasons: tuple[lineage_pb2.Reason, ...]
    catalogue_version: str
    differences: tuple[str, ...]


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

    from runtimes.graph import run_rows
    from runtimes.manifest import verify_artifact

    artifact = verify_artifact(folder, manifest)
    session = _session(str(artifact), manifest.artifact_sha256)
    outputs = manifest.outputs
    (probabilities,) = run_rows(session, [outputs.probabilities], _feed(manifest, features))
    return float(np.asarray(probabilities, dtype=np.float32)[0, outputs.positive_class_index])


def _feed(manifest: Manifest, features: dict[str, FeatureScalar]) -> dict[str, np.ndarray]:
    """The graph's inputs for one stored snapshot, as the runtime decodes a request's."""
    import numpy as np

    from runtimes.graph import BYTES, input_specs

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
    return feed


def rederive_reasons(
    folder: Path, manifest: Manifest, record: lineage_pb2.DecisionRecord
) -> ReasonsReplay:
    """The record's contributions computed again from the artifact, as the runtime computes and
    sends them (float32 values, the base value exactly), and its reasons ranked again from them
    as the gateway ranks them; with every difference from the record named."""
    import numpy as np

    from runtimes.explain import UnexplainableModel
    from runtimes.manifest import verify_artifact
    from runtimes.reasons import ReasonCatalogueError, ReasonRanker, read_catalogue

    out = record.outputs
    try:
        artifact = verify_artifact(folder, manifest)
        explainer = _explainer(str(artifact), manifest.artifact_sha256, manifest.model_dump_json())
        computed = explainer.contributions(_feed(manifest, stored_features(record)))
    except UnexplainableModel as e:
        return ReasonsReplay({}, 0.0, (), "", (f"contributions: cannot be re-derived: {e}",))
    # Exactly the runtime's cast (runtimes.tensors.encode_outputs) and the gateway's read.
    row = np.asarray(computed.values, dtype=np.float32)[0]
    contributions = {name: float(v) for name, v in zip(explainer.features, row, strict=True)}
    base = float(computed.base_value)
    differences = _contribution_differences(dict(out.contributions), contributions)
    if _bits(out.contributions_base) != _bits(base):
        differences.append(f"base value: recorded {out.contributions_base!r}, replayed {base!r}")
    try:
        catalogue = read_catalogue(folder, manifest, manifest.reason_catalogue_sha256)
    except ReasonCatalogueError as e:
        differences.append(f"reason catalogue: {e}")
        return ReasonsReplay(contributions, base, (), "", tuple(differences))
    ranker = ReasonRanker(manifest, catalogue)
    ranked = ranker.rank(
        [contributions[n] for n in ranker.feature_names],
        stored_features(record),
        out.reasons_wanted,
    )
    reasons = tuple(
        lineage_pb2.Reason(
            code=r.code,
            description=r.statement,
            rank=r.rank,
            feature=r.feature,
            contribution=r.contribution,
        )
        for r in ranked
    )
    # The gateway records a catalogue version only with the reasons it gave.
    version = ranker.catalogue_version if reasons else ""
    if out.reason_catalogue_version != version:
        differences.append(
            f"reason catalogue: recorded {out.reason_catalogue_version or '(none)'!r}, the "
            f"model directory's gives {version or '(none)'!r}"
        )
    differences += _reason_differences(sorted(out.reasons, key=lambda r: r.rank), reasons)
    return ReasonsReplay(contributions, base, reasons, version, tuple(differences))


def _contribution_differences(recorded: dict[str, float], replayed: dict[str, float]) -> list[str]:
    lines = [f"contribution of {n}: recorded, not replayed" for n in recorded if n not in replayed]
    for name, value in replayed.items():
        if name not in recorded:
            lines.append(f"contribution of {name}: not recorded, replayed {value!r}")
        elif _bits(recorded[name]) != _bits(value):
            lines.append(f"contribution of {name}: recorded {recorded[name]!r}, replayed {value!r}")
    return lines


def _reason_text(r: lineage_pb2.Reason) -> str:
    return f"{r.code} {r.description!r} ({r.feature or 'no feature'} {r.contribution!r})"


def _same_reason(a: lineage_pb2.Reason, b: lineage_pb2.Reason) -> bool:
    return (a.rank, a.code, a.description, a.feature) == (
        b.rank,
        b.code,
        b.description,
        b.feature,
    ) and _bits(a.contribution) == _bits(b.contribution)


def _reason_differences(
    recorded: list[lineage_pb2.Reason], replayed: tuple[lineage_pb2.Reason, ...]
) -> list[str]:
    lines = []
    if len(recorded) != len(replayed):
        lines.append(f"reasons: recorded {len(recorded)}, replayed {len(replayed)}")
    for n in range(max(len(recorded), len(replayed))):
        a = recorded[n] if n < len(recorded) else None
        b = replayed[n] if n < len(replayed) else None
        if a is not None and b is not None and _same_reason(a, b):
            continue
        lines.append(
            f"reason {n + 1}: recorded {_reason_text(a) if a is not None else '(none)'}, "
            f"replayed {_reason_text(b) if b is not None else '(none)'}"
        )
    return lines


@functools.lru_cache(maxsize=8)
def _explainer(artifact: str, sha256: str, manifest_json: str) -> Explainer:
    """One explainer per artifact for a run replaying many decisions (keyed as ``_session``,
    and by the manifest as JSON: a manifest holds dicts, so it cannot be a key itself)."""
    from runtimes.explain import Explainer

    return Explainer.for_artifact(artifact, Manifest.model_validate_json(manifest_json))


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
    reasons = rederive_reasons(folder, manifest, record) if record.outputs.contributions else None
    return ReplayResult(
        record.outputs.score,
        score,
        manifest.served_name,
        folder,
        record.model.scoring_environment,
        scoring_environment(),
        reasons,
    )


def _reason_lines(reasons: ReasonsReplay | None) -> list[tuple[str, str]]:
    if reasons is None:
        return []
    codes = ", ".join(r.code for r in reasons.reasons) or "(none)"
    return [
        ("contributions", f"{len(reasons.contributions)} re-derived, base {reasons.base!r}"),
        ("reasons", f"{codes}  (catalogue {reasons.catalogue_version or '(none)'})"),
    ]


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
    if withheld_features(record):
        raise fail(prog, f"{record.decision_id}: {WITHHELD}; replay scores them again")
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
                *_reason_lines(result.reasons),
            ]
        )
    )
    differences = result.environment_differences
    if result.match:
        if result.reasons is None:
            print("MATCH: the replayed score equals the stored score bit for bit\n")
        else:
            print(
                "MATCH: the replayed score, contributions and reasons equal the stored ones "
                "bit for bit\n"
            )
        return 0
    for line in differences:
        print(f"environment differs: {line}")
    for line in result.reason_differences:
        print(f"differs: {line}")
    if result.score_equal and result.reason_differences:
        print(
            "MISMATCH: the score is equal, but the replayed contributions or reasons differ "
            "from the stored ones\n"
        )
    elif result.score_equal:
        print(
            "NOT CONFIRMED: the scores are equal, but this replay does not run in the scoring "
            "environment the decision was made in, so equality is not guaranteed\n"
        )
    else:
        print("MISMATCH: the replayed score differs from the stored score\n")
    return EXIT_NO
