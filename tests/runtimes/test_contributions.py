"""Per-feature contributions of the demo models, computed from their served artifacts.

On thousands of realistic rows (absent optional features included) for every demo model: the
contributions plus the base value are the raw margin onnxruntime scores (log-odds; log s for the
trade-anomaly isolation forest), they equal shap's on the same trained scikit-learn model (its
TreeExplainer, or its LinearExplainer over the training rows for the scorecard; the forest's mean
path lengths scaled to log s), with the columns grouped into manifest features by the sklearn
pipeline's own ColumnTransformer, and a row's contributions are the same bits whatever rows
share its call.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pytest
from sklearn.ensemble._iforest import _average_path_length

from runtimes.explain import Explainer
from runtimes.explain.linear import LINEAR_OPS
from runtimes.explain.trees import TREE_OPS
from runtimes.graph import PROVIDER
from runtimes.manifest import ARTIFACT_FILE, CategoryFeature, Manifest, absent_value
from runtimes.training.anomaly import AnomalyForest
from runtimes.training.build import TrainedModel, onnx_inputs, train
from runtimes.training.datasets import sample_requests
from runtimes.training.specs import MODEL_SPECS

with warnings.catch_warnings():
    # shap's plotting module, imported with it, uses a matplotlib call matplotlib now warns of.
    warnings.simplefilter("ignore", PendingDeprecationWarning)
    import shap

ROWS = 4000
TOLERANCE = 1e-5
# onnxruntime's LOGISTIC is an approximation (relative error up to ~1e-4 in the far tail), so
# the probability is checked to an absolute bound, the margin to TOLERANCE.
PROBABILITY_TOLERANCE = 1e-6
SERVED = [f"{spec.name}-v{spec.version}" for spec in MODEL_SPECS]


def _artifact(model_dir: Path, m: Manifest) -> Path:
    return model_dir / m.name / m.version / ARTIFACT_FILE


def _rows(m: Manifest, n: int, seed: int) -> pd.DataFrame:
    """Requests as the runtime receives them: absent features as their absent value, numbers
    float32-exact (the graph reads float32; sklearn then sees the same values)."""
    requests = sample_requests(m.name, n, seed=seed, absent=True)
    frame = pd.DataFrame(
        [{f.name: r.get(f.name, absent_value(f)) for f in m.features} for r in requests]
    )
    for f in m.features:
        if not isinstance(f, CategoryFeature):
            frame[f.name] = frame[f.name].astype(np.float32).astype(np.float64)
    return frame


def _raw_margin(artifact: Path, feed: dict[str, np.ndarray]) -> np.ndarray:
    """What onnxruntime scores before the LOGISTIC post-transform: the same artifact with the
    scoring node's post_transform set to NONE (its positive-class output is then the margin).
    The anomaly forest's margin is log s, s its served positive-class probability."""
    model = onnx.load(str(artifact))
    (node,) = [n for n in model.graph.node if n.op_type in (*TREE_OPS, *LINEAR_OPS)]
    if node.op_type == "TreeEnsembleRegressor":
        _, scores = ort.InferenceSession(str(artifact), providers=[PROVIDER]).run(None, feed)
        return np.log(np.asarray(scores, dtype=np.float64)[:, 1])
    for attribute in node.attribute:
        if attribute.name == "post_transform":
            attribute.s = b"NONE"
    session = ort.InferenceSession(model.SerializeToString(), providers=[PROVIDER])
    _, scores = session.run(None, feed)
    return np.asarray(scores, dtype=np.float64)[:, 1]


@pytest.fixture(scope="module")
def explainers(model_dir: Path, manifests: dict[str, Manifest]) -> dict[str, Explainer]:
    return {
        s: Explainer.for_artifact(_artifact(model_dir, manifests[s]), manifests[s]) for s in SERVED
    }


@pytest.mark.parametrize("served", SERVED)
def test_contributions_plus_base_are_the_margin_onnxruntime_scores(
    served: str, model_dir: Path, manifests: dict[str, Manifest], explainers: dict[str, Explainer]
) -> None:
    m = manifests[served]
    frame = _rows(m, ROWS, seed=101)
    feed = onnx_inputs(m.features, frame)
    contributions = explainers[served].contributions(feed)
    assert contributions.values.shape == (ROWS, len(m.features))

    margin = _raw_margin(_artifact(model_dir, m), feed)
    worst = float(
        np.max(np.abs(contributions.values.sum(axis=1) + contributions.base_value - margin))
    )
    session = ort.InferenceSession(str(_artifact(model_dir, m)), providers=[PROVIDER])
    _, probabilities = session.run(None, feed)
    p = np.asarray(probabilities, dtype=np.float64)[:, 1]
    worst_p = float(np.max(np.abs(explainers[served].probabilities(contributions) - p)))
    absent = sum(int(frame[f.name].isna().sum()) for f in m.features)
    print(
        f"\n{served}: max |sum + base - margin| {worst:.2e}, max |p - p(ort)| {worst_p:.2e} "
        f"({absent} absent values)"
    )
    assert worst <= TOLERANCE
    assert worst_p <= PROBABILITY_TOLERANCE
    # Every feature moves some row's score: a map that lost a feature would show zeros.
    assert np.all(np.abs(contributions.values).max(axis=0) > 0)


def _sklearn_groups(trained: TrainedModel, m: Manifest) -> np.ndarray:
    """Column -> manifest feature on the sklearn side, from the ColumnTransformer's output names
    (``<step>__<feature>`` or ``<step>__<feature>_<category or bin>``)."""
    names = [f.name for f in m.features]
    groups = []
    for column in trained.pipeline[:-1].get_feature_names_out():
        rest = str(column).split("__", 1)[1]
        matches = [k for k, name in enumerate(names) if rest == name or rest.startswith(name + "_")]
        (best,) = [k for k in matches if len(names[k]) == max(len(names[j]) for j in matches)]
        groups.append(best)
    return np.asarray(groups)


def _shap_values(trained: TrainedModel, columns: np.ndarray) -> tuple[np.ndarray, float]:
    """shap's values and base value of the trained model, in the margin the explainer reports:
    for the anomaly forest, shap explains the mean path length E[h(x)], and the margin is
    log s = -ln 2 * E[h(x)] / c(psi), so both are scaled by -ln 2 / c(psi)."""
    classifier = trained.pipeline.steps[-1][1]
    if isinstance(classifier, AnomalyForest):
        explainer = shap.TreeExplainer(classifier)
        values = np.asarray(explainer.shap_values(columns, check_additivity=False))
        scale = -math.log(2.0) / float(_average_path_length([classifier.max_samples_])[0])
        return values * scale, float(np.ravel(explainer.expected_value)[0]) * scale
    if type(classifier).__name__ == "LogisticRegression":
        background = trained.pipeline[:-1].transform(trained.train)
        masker = shap.maskers.Independent(background, max_samples=len(background))
        explainer = shap.LinearExplainer(classifier, masker)
        values = explainer.shap_values(columns)
    else:
        explainer = shap.TreeExplainer(classifier)
        values = explainer.shap_values(columns, check_additivity=False)
    values = np.asarray(values)
    if values.ndim == 3:
        values = values[..., 1]
    return values, float(np.ravel(explainer.expected_value)[-1])


@pytest.mark.parametrize("served", SERVED)
def test_contributions_equal_shap_on_the_trained_sklearn_model(
    served: str, manifests: dict[str, Manifest], explainers: dict[str, Explainer]
) -> None:
    m = manifests[served]
    (spec,) = [s for s in MODEL_SPECS if f"{s.name}-v{s.version}" == served]
    trained = train(spec)
    frame = _rows(m, ROWS, seed=202)
    ours = explainers[served].contributions(onnx_inputs(m.features, frame))

    groups = _sklearn_groups(trained, m)
    np.testing.assert_array_equal(explainers[served].preprocessing.feature_of_column, groups)
    values, base = _shap_values(trained, trained.pipeline[:-1].transform(frame))
    theirs = np.zeros_like(ours.values)
    np.add.at(theirs, (slice(None), groups), values)
    worst = float(np.max(np.abs(theirs - ours.values)))
    print(f"\n{served}: max |ours - shap| {worst:.2e}, base {ours.base_value:.6f} vs {base:.6f}")
    assert worst <= TOLERANCE
    assert abs(ours.base_value - base) <= TOLERANCE


@pytest.mark.parametrize("served", SERVED)
def test_a_rows_contributions_are_the_same_bits_alone_and_in_any_batch(
    served: str, manifests: dict[str, Manifest], explainers: dict[str, Explainer]
) -> None:
    m = manifests[served]
    explainer = explainers[served]
    feed = onnx_inputs(m.features, _rows(m, 300, seed=303))
    everything = explainer.contributions(feed).values
    for size in (1, 2, 7, 64, 299):
        for start in range(0, 300 - size + 1, max(size, 37)):
            part = {name: column[start : start + size] for name, column in feed.items()}
            got = explainer.contributions(part).values
            assert got.tobytes() == everything[start : start + size].tobytes(), (size, start)
