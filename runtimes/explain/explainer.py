"""Per-feature contributions to a served model's raw score, computed from the artifact itself.

``Explainer.for_artifact(artifact, manifest)`` reads the scoring node of the graph the runtime
serves (a tree ensemble: exact path-dependent TreeSHAP, ``treeshap``; a logistic scorecard:
points, ``linear``), how the graph turns that node's score into the probability (``link``),
finds which manifest feature each of its input columns comes from (``columns``), and
precomputes what explaining needs. ``contributions(feed)`` then takes the graph's own inputs and
gives, per row, each manifest feature's contribution to the raw margin, in manifest order, and
the base value: ``values.sum(axis=1) + base_value`` is the margin. The margin is the log-odds
before a classifier's LOGISTIC post-transform, or, for the anomaly forest, log s (the anomaly
score's logarithm, -ln 2 * E[h(x)] / c(psi)); either way a positive contribution pushes the
score towards the adverse class. A row's contributions are the same bits whatever rows share
its call.

A graph the explainer cannot read exactly is refused at load with UnexplainableModel naming the
problem.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import onnx
from onnx import ModelProto

from runtimes.explain.columns import Preprocessing
from runtimes.explain.errors import UnexplainableModel
from runtimes.explain.linear import LINEAR_OPS, LinearPoints, read_scorecard
from runtimes.explain.link import Link, regressor_link
from runtimes.explain.trees import TREE_OPS, find_node, read_tree_ensemble
from runtimes.explain.treeshap import TreeShap
from runtimes.manifest import Manifest

Method = Literal["tree-shap", "linear-points"]
EXPLAINED_CLASS_INDEX = 1


Attribution = TreeShap | LinearPoints
"""What computes the per-feature values from the scoring node's input columns."""


@dataclass(frozen=True)
class Contributions:
    """Each row's per-feature contributions to its raw margin."""

    values: np.ndarray
    """float64 [N, F]: manifest feature order."""
    base_value: float
    """The margin of a row that tells the model nothing: the training average."""

    @property
    def margins(self) -> np.ndarray:
        """float64 [N]: the raw margin each row scored (log-odds; log s for the anomaly
        forest)."""
        return np.asarray(self.values.sum(axis=1) + self.base_value)


class Explainer:
    """Explains one served model version; build with ``for_artifact``."""

    def __init__(
        self,
        manifest: Manifest,
        method: Method,
        preprocessing: Preprocessing,
        attribution: Attribution,
        link: Link,
    ) -> None:
        self.manifest = manifest
        self.method: Method = method
        self.features = tuple(f.name for f in manifest.features)
        self.link = link
        self.preprocessing = preprocessing
        self.attribution = attribution

    @classmethod
    def for_artifact(
        cls, artifact: bytes | str | Path | ModelProto, manifest: Manifest
    ) -> Explainer:
        """The explainer of ``artifact`` (the served model's bytes, path or proto), whose features
        ``manifest`` names; raises UnexplainableModel naming what it cannot explain exactly."""
        model = _model(artifact)
        if manifest.outputs.positive_class_index != EXPLAINED_CLASS_INDEX:
            raise UnexplainableModel(
                f"{manifest.served_name}: the explainer reads the score of class "
                f"{EXPLAINED_CLASS_INDEX}, the manifest's positive class is "
                f"{manifest.outputs.positive_class_index}"
            )
        n = len(manifest.features)
        attribution: Attribution
        try:
            node = find_node(model, TREE_OPS)
            if node is not None:
                ensemble = read_tree_ensemble(model)
                link = Link(1.0, ensemble.post_transform)
                if node.op_type == "TreeEnsembleRegressor":
                    outputs = manifest.outputs
                    link = regressor_link(
                        model,
                        node,
                        ensemble.post_transform,
                        outputs.probabilities,
                        outputs.positive_class_index,
                    )
                pre = Preprocessing(model, ensemble.input, manifest.features)
                attribution = TreeShap(ensemble, pre.feature_of_column, n, link.scale)
                return cls(manifest, "tree-shap", pre, attribution, link)
            if find_node(model, LINEAR_OPS) is not None:
                scorecard = read_scorecard(model)
                pre = Preprocessing(model, scorecard.input, manifest.features)
                if pre.feature_of_column.size != scorecard.coefficients.size:
                    raise UnexplainableModel(
                        f"{scorecard.input!r} has {pre.feature_of_column.size} columns but the "
                        f"scorecard {scorecard.coefficients.size} coefficients"
                    )
                attribution = LinearPoints(scorecard, pre.feature_of_column, n)
                link = Link(1.0, scorecard.post_transform)
                return cls(manifest, "linear-points", pre, attribution, link)
        except UnexplainableModel as e:
            raise UnexplainableModel(f"{manifest.served_name}: {e}") from e
        ops = sorted({node.op_type for node in model.graph.node})
        raise UnexplainableModel(
            f"{manifest.served_name}: no {', '.join((*TREE_OPS, *LINEAR_OPS))} node to explain "
            f"(the graph has {', '.join(ops)})"
        )

    @property
    def base_value(self) -> float:
        return self.attribution.base_value

    def contributions(self, feed: Mapping[str, np.ndarray]) -> Contributions:
        """Contributions for the rows of ``feed``, the graph's inputs ([N, 1] per feature)."""
        return self.contributions_of_columns(self.preprocessing.columns(feed))

    def contributions_of_rows(
        self, feed: Mapping[str, np.ndarray], rows: np.ndarray
    ) -> Contributions:
        """Contributions for the rows of ``feed`` where ``rows`` (bool [N]) is set, NaN for the
        others: those rows alone are computed, with the bits they have in any call."""
        n = len(rows)
        values = np.full((n, len(self.features)), np.nan)
        if rows.any():
            chosen = {name: column[rows] for name, column in feed.items()}
            values[rows] = self.contributions(chosen).values
        return Contributions(values, self.attribution.base_value)

    def probabilities(self, contributions: Contributions) -> np.ndarray:
        """float64 [N]: the positive-class probability the rows' margins give, through the
        graph's own post-transform."""
        return self.link.probability(contributions.margins)

    def contributions_of_columns(self, columns: np.ndarray) -> Contributions:
        """Contributions for rows given as the scoring node's input ([N, C] float32)."""
        return Contributions(self.attribution.values(columns), self.attribution.base_value)


def _model(artifact: bytes | str | Path | ModelProto) -> ModelProto:
    if isinstance(artifact, ModelProto):
        return artifact
    if isinstance(artifact, bytes):
        return onnx.load_model_from_string(artifact)
    return onnx.load(str(artifact))
