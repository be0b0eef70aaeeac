"""An isolation forest served as the other demo models are: a probability of the adverse class.

``AnomalyForest`` is sklearn's IsolationForest whose anomaly score s(x) = 2 ** (-E[h(x)] / c(psi))
(``-score_samples``, in (0, 1]; h the path length to isolate x in one tree, c(psi) the average
path length of an unsuccessful search in a tree of psi = max_samples rows) is read as the
probability of class 1, "anomalous": ``predict_proba`` is [1 - s, s]. The runtime, the gateway's
threshold policy and the lineage store then treat it like any other score.

Its ONNX graph (``register_onnx_converter``) is written for explaining as much as for scoring:
one ``TreeEnsembleRegressor`` holds every isolation tree, each leaf's weight the path length
sklearn gives a row that ends there (the leaf's depth plus c(n) for the n training rows it still
holds), so the node's output is the sum of a row's path lengths over the trees, and TreeSHAP over
that node attributes it exactly (``runtimes.explain``). Then:

    margin = sum * (-ln 2 / (T * c(psi)))       (Mul by one constant: log s, the raw margin)
    s      = Exp(margin)
    probabilities = [1 - s, s];  label = s >= threshold

skl2onnx's own IsolationForest converter runs one regressor per tree that returns a leaf id, and
computes the path length from it with label encoders: correct, but nothing a tree explainer can
read, and it outputs a decision function rather than probabilities.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from skl2onnx import update_registered_converter
from skl2onnx.common.data_types import FloatTensorType, Int64TensorType
from skl2onnx.common.tree_ensemble import (
    add_tree_to_attribute_pairs,
    get_default_tree_regressor_attribute_pairs,
)
from skl2onnx.proto import onnx_proto
from sklearn.ensemble import IsolationForest
from sklearn.ensemble._iforest import _average_path_length

ALIAS = "ScoregateAnomalyForest"
ML_OPSET = 3


class AnomalyForest(IsolationForest):  # type: ignore[misc]
    """IsolationForest whose ``predict_proba`` is [1 - s, s], s its anomaly score in (0, 1].

    ``threshold`` is the score from which a row is labelled anomalous (label 1): sklearn's own
    cut, ``-offset_`` (0.5 with ``contamination="auto"``, else the training quantile).
    """

    classes_ = np.array([0, 1])

    def anomaly_score(self, X: Any) -> np.ndarray:
        return np.asarray(-self.score_samples(X), dtype=np.float64)

    def predict_proba(self, X: Any) -> np.ndarray:
        s = self.anomaly_score(X)
        return np.column_stack([1.0 - s, s])

    @property
    def threshold(self) -> float:
        return float(-self.offset_)

    @property
    def margin_scale(self) -> float:
        """log s per unit of summed path length: -ln 2 / (T * c(psi))."""
        psi = _average_path_length([self._max_samples])[0]
        return -math.log(2.0) / (len(self.estimators_) * float(psi))


def leaf_path_lengths(tree: Any) -> np.ndarray:
    """float64 [nodes]: at a leaf, the path length sklearn scores a row ending there (edges from
    the root plus c(n) of its training rows); 0 at branches."""
    depth = tree.compute_node_depths().astype(np.float64) - 1.0
    leaf = tree.children_left == -1
    return np.where(leaf, depth + _average_path_length(tree.n_node_samples), 0.0)


def _parse(scope: Any, model: Any, inputs: list[Any], custom_parsers: Any = None) -> list[Any]:
    operator = scope.declare_local_operator(ALIAS, model)
    operator.inputs = inputs
    label = scope.declare_local_variable("label", Int64TensorType())
    probabilities = scope.declare_local_variable("probabilities", FloatTensorType())
    operator.outputs.append(label)
    operator.outputs.append(probabilities)
    return list(operator.outputs)


def _shapes(operator: Any) -> None:
    rows = operator.inputs[0].get_first_dimension()
    operator.outputs[0].type = Int64TensorType([rows])
    operator.outputs[1].type = FloatTensorType([rows, 2])


def _convert(scope: Any, operator: Any, container: Any) -> None:
    forest: AnomalyForest = operator.raw_operator
    columns = operator.inputs[0].type.shape[1]
    if forest._max_features != columns:
        # sklearn then gives each tree its own column subset, which one node cannot express.
        raise RuntimeError(
            f"AnomalyForest with max_features covering {forest._max_features} of {columns} "
            "columns; the exporter needs every tree to read every column"
        )
    attrs = get_default_tree_regressor_attribute_pairs()
    for tree_id, estimator in enumerate(forest.estimators_):
        tree = estimator.tree_
        start = len(attrs["target_nodeids"])
        add_tree_to_attribute_pairs(
            attrs, False, tree, tree_id, 1.0, 0, False, True, dtype=np.float32
        )
        lengths = leaf_path_lengths(tree)
        for k in range(start, len(attrs["target_nodeids"])):
            attrs["target_weights"][k] = float(lengths[attrs["target_nodeids"][k]])
    attrs["n_targets"] = 1
    attrs["target_ids"] = [0] * len(attrs["target_ids"])
    attrs["aggregate_function"] = "SUM"
    for key in ("nodes_values", "target_weights", "nodes_hitrates"):
        attrs[key] = np.asarray(attrs[key], dtype=np.float32)

    path_lengths = scope.get_unique_variable_name("path_lengths")
    container.add_node(
        "TreeEnsembleRegressor",
        operator.inputs[0].full_name,
        path_lengths,
        op_domain="ai.onnx.ml",
        op_version=ML_OPSET,
        name=scope.get_unique_operator_name("IsolationTrees"),
        **attrs,
    )
    scale = scope.get_unique_variable_name("margin_scale")
    container.add_initializer(scale, onnx_proto.TensorProto.FLOAT, [], [forest.margin_scale])
    margin = scope.get_unique_variable_name("margin")
    container.add_node(
        "Mul", [path_lengths, scale], margin, name=scope.get_unique_operator_name("Margin")
    )
    score = scope.get_unique_variable_name("anomaly_score")
    container.add_node("Exp", margin, score, name=scope.get_unique_operator_name("AnomalyScore"))
    one = scope.get_unique_variable_name("one")
    container.add_initializer(one, onnx_proto.TensorProto.FLOAT, [], [1.0])
    usual = scope.get_unique_variable_name("usual")
    container.add_node("Sub", [one, score], usual, name=scope.get_unique_operator_name("Usual"))
    container.add_node(
        "Concat",
        [usual, score],
        operator.outputs[1].full_name,
        axis=1,
        name=scope.get_unique_operator_name("Probabilities"),
    )
    threshold = scope.get_unique_variable_name("threshold")
    container.add_initializer(
        threshold, onnx_proto.TensorProto.FLOAT, [], [float(np.float32(forest.threshold))]
    )
    flagged = scope.get_unique_variable_name("flagged")
    container.add_node(
        "GreaterOrEqual", [score, threshold], flagged, name=scope.get_unique_operator_name("Flag")
    )
    flat = scope.get_unique_variable_name("flagged_rows")
    shape = scope.get_unique_variable_name("rows_shape")
    container.add_initializer(shape, onnx_proto.TensorProto.INT64, [1], [-1])
    container.add_node(
        "Reshape", [flagged, shape], flat, name=scope.get_unique_operator_name("Rows")
    )
    container.add_node(
        "Cast",
        flat,
        operator.outputs[0].full_name,
        to=onnx_proto.TensorProto.INT64,
        name=scope.get_unique_operator_name("Label"),
    )


def register_onnx_converter() -> None:
    """Teaches skl2onnx to export AnomalyForest (idempotent: it replaces its own entry)."""
    update_registered_converter(AnomalyForest, ALIAS, _shapes, _convert, parser=_parse)
