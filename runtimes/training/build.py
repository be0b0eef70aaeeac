"""Trains the demo models and writes them as a model repository, byte-for-byte reproducibly.

``build_all(out)`` writes ``out/<name>/<version>/{model.onnx, manifest.json}`` for every entry of
``MODEL_SPECS``. Each artifact is checked before it is written: onnxruntime must reproduce
sklearn's probabilities on the held-out rows (|diff| < 1e-4), and score each of 1,000 held-out
rows identically alone and in batches of every size and position, or the build fails.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pandas as pd
from onnx import ModelProto
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType, StringTensorType
from sklearn.base import is_classifier
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import Pipeline

from runtimes.graph import BatchDependentScores, check_batch_invariance, open_session
from runtimes.manifest import (
    ARTIFACT_FILE,
    MANIFEST_FILE,
    CategoryFeature,
    Feature,
    Histogram,
    Manifest,
    NumberFeature,
    Training,
)
from runtimes.reasons import (
    CATALOGUE_FILE,
    ReasonCatalogueError,
    catalogue_bytes,
    catalogue_sha256,
    validate,
)
from runtimes.training.anomaly import register_onnx_converter
from runtimes.training.catalogues import demo_catalogue
from runtimes.training.datasets import generate
from runtimes.training.explain_data import ExplanationDataError, add_explanation_data
from runtimes.training.specs import MODEL_SPECS, ModelSpec

log = logging.getLogger(__name__)

# Pinned so the same libraries always emit the same graph; onnxruntime >= 1.20 runs both domains.
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
MAX_PROBABILITY_DIFF = 1e-4
# Held-out rows scored alone and in every batch shape by the batch-invariance check.
INVARIANCE_ROWS = 1000
_LIBRARIES = ("scikit-learn", "skl2onnx", "onnx", "numpy", "pandas")


class BuildError(Exception):
    """An artifact failed its checks; nothing is written for it."""


def onnx_inputs(features: tuple[Feature, ...], frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """The graph's inputs for ``frame``: one [N, 1] tensor per feature, as the contract says."""
    inputs: dict[str, np.ndarray] = {}
    for f in features:
        column = frame[f.name].to_numpy()
        if isinstance(f, CategoryFeature):
            inputs[f.name] = column.astype(object).reshape(-1, 1)
        else:
            inputs[f.name] = column.astype(np.float32).reshape(-1, 1)
    return inputs


def data_fingerprint(frame: pd.DataFrame, labels: np.ndarray) -> str:
    """sha256 over every column (name, then float64 or NUL-joined UTF-8 bytes) and the labels."""
    digest = hashlib.sha256()
    for name in frame.columns:
        column = frame[name].to_numpy()
        digest.update(str(name).encode() + b"\x00")
        if column.dtype == object:
            digest.update("\x00".join(str(v) for v in column).encode())
        else:
            digest.update(column.astype("<f8").tobytes())
    digest.update(labels.astype("<i8").tobytes())
    return digest.hexdigest()


def _quantile_histogram(values: np.ndarray, low: float, high: float) -> Histogram:
    """Ten (or fewer, for discrete values) quantile bins, outer edges at the valid range; absent
    (NaN) values are counted apart."""
    absent = np.isnan(values)
    values = values[~absent]
    inner = np.unique(np.quantile(values, np.linspace(0.1, 0.9, 9)))
    inner = inner[(inner > low) & (inner < high)]
    edges = np.concatenate([[low], inner, [high]])
    counts, _ = np.histogram(np.clip(values, low, high), bins=edges)
    return Histogram(
        counts=tuple(int(c) for c in counts),
        edges=tuple(float(e) for e in edges),
        missing=int(absent.sum()),
    )


def _category_histogram(values: np.ndarray, categories: tuple[str, ...]) -> Histogram:
    counts = tuple(int(np.count_nonzero(values == c)) for c in categories)
    return Histogram(counts=counts, categories=categories, missing=len(values) - sum(counts))


def baselines(
    features: tuple[Feature, ...], frame: pd.DataFrame, scores: np.ndarray
) -> dict[str, Histogram]:
    """Training-set distributions per feature and of the score, for drift reports."""
    out: dict[str, Histogram] = {}
    for f in features:
        column = frame[f.name].to_numpy()
        if isinstance(f, NumberFeature):
            out[f.name] = _quantile_histogram(column.astype(np.float64), f.min, f.max)
        elif isinstance(f, CategoryFeature):
            out[f.name] = _category_histogram(column, f.categories)
        else:
            column = column.astype(np.float64)
            flags = np.where(np.isnan(column), "", np.where(column > 0.5, "true", "false"))
            out[f.name] = _category_histogram(flags, ("false", "true"))
    out["score"] = _quantile_histogram(scores.astype(np.float64), 0.0, 1.0)
    return out


def export_onnx(pipeline: Pipeline, spec: ModelSpec) -> ModelProto:
    initial_types: list[tuple[str, Any]] = [
        (f.name, StringTensorType([None, 1]))
        if isinstance(f, CategoryFeature)
        else (f.name, FloatTensorType([None, 1]))
        for f in spec.features
    ]
    classifier = pipeline.steps[-1][1]
    register_onnx_converter()
    # ZipMap is a classifier's option; the anomaly forest's converter writes its own outputs.
    options = {id(classifier): {"zipmap": False}} if is_classifier(classifier) else {}
    with warnings.catch_warnings():
        # skl2onnx 1.20 hands numpy bools to onnx's int attributes for HistGradientBoosting;
        # protobuf still stores them as 0/1 but warns, and our tests turn warnings into errors.
        warnings.filterwarnings(
            "ignore", message=r".*Expected an int, got a boolean", category=DeprecationWarning
        )
        model = to_onnx(
            pipeline,
            initial_types=initial_types,
            target_opset=TARGET_OPSET,
            options=options,
            name=f"{spec.name}-v{spec.version}",
        )
    if not isinstance(model, ModelProto):
        raise BuildError(f"{spec.name} v{spec.version}: skl2onnx returned {type(model)}")
    # skl2onnx lists the opsets it used in set order, which follows Python's per-process string
    # hashing: sorted, the same build gives the same bytes in every process and on every machine.
    opsets = sorted((o.domain, o.version) for o in model.opset_import)
    del model.opset_import[:]
    for domain, version in opsets:
        model.opset_import.add(domain=domain, version=version)
    return model


def _check_onnx(spec: ModelSpec, blob: bytes, frame: pd.DataFrame, expected: np.ndarray) -> None:
    """Fails the build unless onnxruntime reproduces sklearn's probabilities."""
    session = ort.InferenceSession(blob, providers=["CPUExecutionProvider"])
    outputs = [o.name for o in session.get_outputs()]
    if outputs != ["label", "probabilities"]:
        raise BuildError(f"{spec.name} v{spec.version}: unexpected graph outputs {outputs}")
    _, probabilities = session.run(None, onnx_inputs(spec.features, frame))
    worst = float(np.max(np.abs(np.asarray(probabilities, dtype=np.float64) - expected)))
    if not worst < MAX_PROBABILITY_DIFF:
        raise BuildError(
            f"{spec.name} v{spec.version}: onnxruntime differs from sklearn by {worst:.3g} "
            f"(limit {MAX_PROBABILITY_DIFF}) on held-out rows; refusing to write the artifact"
        )


def _check_batch_invariance(spec: ModelSpec, blob: bytes, frame: pd.DataFrame) -> None:
    """Fails the build unless every held-out row scores the same float32 alone and in batches
    of any size and position (``runtimes.graph.check_batch_invariance``): replay scores a
    decision alone, and micro-batching scored it among other callers' rows."""
    rows = frame.iloc[:INVARIANCE_ROWS]
    try:
        compared = check_batch_invariance(
            open_session(blob), "probabilities", onnx_inputs(spec.features, rows)
        )
    except BatchDependentScores as e:
        raise BuildError(
            f"{spec.name} v{spec.version}: its scores depend on the rows that share a call "
            f"({e}); replay could not reproduce them, refusing to write the artifact"
        ) from e
    log.info("%s v%s: %d row scores identical in every batch", spec.name, spec.version, compared)


@dataclass(frozen=True)
class TrainedModel:
    """A spec's fitted pipeline and the rows it was trained and checked on."""

    spec: ModelSpec
    pipeline: Pipeline
    train: pd.DataFrame
    heldout: pd.DataFrame
    y_train: np.ndarray
    y_heldout: np.ndarray


def train(spec: ModelSpec) -> TrainedModel:
    """Generates the spec's data and fits its pipeline (the same model every run)."""
    data = generate(spec.name, spec.rows, spec.data_seed)
    # Rows are drawn independently, so the tail is a fair held-out split.
    split = spec.rows - int(spec.rows * spec.heldout_fraction)
    # The graph computes in float32; training on float32-exact values keeps both sides equal.
    rows = _float32_exact(data.features.iloc[:split])
    heldout = _float32_exact(data.features.iloc[split:])
    pipeline = spec.pipeline(spec.model_seed)
    pipeline.fit(rows, data.labels[:split])
    return TrainedModel(spec, pipeline, rows, heldout, data.labels[:split], data.labels[split:])


def build_model(spec: ModelSpec, out_dir: Path) -> Manifest:
    """Trains, exports, checks and writes one model version; returns its manifest."""
    trained = train(spec)
    pipeline, train_rows, heldout = trained.pipeline, trained.train, trained.heldout
    heldout_proba = pipeline.predict_proba(heldout)
    auc = float(roc_auc_score(trained.y_heldout, heldout_proba[:, 1]))

    model = export_onnx(pipeline, spec)
    try:
        add_explanation_data(model, pipeline, train_rows)
    except ExplanationDataError as e:
        raise BuildError(f"{spec.name} v{spec.version}: {e}; refusing to write the artifact") from e
    blob = model.SerializeToString(deterministic=True)
    _check_onnx(spec, blob, heldout, heldout_proba)
    _check_batch_invariance(spec, blob, heldout)

    manifest = Manifest(
        name=spec.name,
        version=spec.version,
        description=spec.description,
        author=spec.author,
        features=spec.features,
        artifact_sha256=hashlib.sha256(blob).hexdigest(),
        training=Training(
            algorithm=spec.algorithm,
            seed=spec.model_seed,
            rows=len(train_rows),
            heldout_rows=len(heldout),
            data_fingerprint=data_fingerprint(train_rows, trained.y_train),
            heldout_auc=round(auc, 6),
            libraries={lib: metadata.version(lib) for lib in _LIBRARIES},
        ),
        baselines=baselines(spec.features, train_rows, pipeline.predict_proba(train_rows)[:, 1]),
    )
    reasons = demo_catalogue(spec.name, spec.version)
    catalogue = catalogue_bytes(reasons)
    manifest = manifest.model_copy(update={"reason_catalogue_sha256": catalogue_sha256(catalogue)})
    try:
        validate(reasons, manifest, Path(CATALOGUE_FILE))
    except ReasonCatalogueError as e:
        raise BuildError(f"{spec.name} v{spec.version}: {e}; refusing to write it") from e
    folder = out_dir / spec.name / spec.version
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ARTIFACT_FILE).write_bytes(blob)
    (folder / CATALOGUE_FILE).write_bytes(catalogue)
    (folder / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2) + "\n")
    log.info("built %s sha256=%s auc=%.4f", manifest.served_name, manifest.artifact_sha256, auc)
    return manifest


def _float32_exact(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for name in out.columns:
        if out[name].dtype != object:
            out[name] = out[name].to_numpy().astype(np.float32).astype(np.float64)
    return out


def build_all(out_dir: Path) -> list[Manifest]:
    """Builds every demo model version into the repository ``out_dir`` (same bytes every run)."""
    return [build_model(spec, out_dir) for spec in MODEL_SPECS]
