"""What the explainer needs from training, written into the exported graph: tree covers and the
scorecard's reference.

The runtime explains a score from the served artifact alone (``runtimes.explain``), so the
training statistics an exact explanation needs travel inside it, covered by its sha256:

- a tree ensemble's node covers (training rows per node, as ``shap.TreeExplainer`` reads them:
  ``tree_.weighted_n_node_samples`` for GradientBoostingClassifier and AnomalyForest's isolation
  trees, the predictor nodes' ``count`` for HistGradientBoostingClassifier) in the node's
  ``nodes_hitrates`` attribute, which onnxruntime does not compute with. The exporter's (tree
  id, node id) are checked against sklearn's trees, node by node (leaf or branch, column,
  children, threshold), before a cover is written;
- a logistic scorecard's reference, each input column's mean over the training rows, in the
  model's metadata.

The result is read back with the explainer's own readers, which refuse inconsistent covers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import ModelProto
from sklearn.ensemble import GradientBoostingClassifier, HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from runtimes.explain.errors import UnexplainableModel
from runtimes.explain.linear import REFERENCE_KEY, encode_reference, read_scorecard
from runtimes.explain.trees import (
    COVERS_ATTRIBUTE,
    TREE_OPS,
    attributes,
    find_node,
    read_tree_ensemble,
)
from runtimes.training.anomaly import AnomalyForest

# How far (in float32 steps) skl2onnx may move a threshold so float32 comparisons decide as
# sklearn's float64 ones do.
THRESHOLD_ULPS = 4


class ExplanationDataError(ValueError):
    """The exported graph does not match the trained model, or its covers do not add up."""


@dataclass(frozen=True)
class SklearnTree:
    """One trained tree in sklearn's terms, nodes by sklearn's index."""

    is_leaf: np.ndarray
    column: np.ndarray
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    cover: np.ndarray


def _cart_tree(t: Any) -> SklearnTree:
    """A fitted ``sklearn.tree`` structure (``estimator.tree_``)."""
    return SklearnTree(
        is_leaf=t.children_left == -1,
        column=t.feature.astype(np.int64),
        threshold=t.threshold.astype(np.float64),
        left=t.children_left.astype(np.int64),
        right=t.children_right.astype(np.int64),
        cover=t.weighted_n_node_samples.astype(np.float64),
    )


def sklearn_trees(classifier: Any) -> list[SklearnTree]:
    """The trees of a binary GradientBoostingClassifier, HistGradientBoostingClassifier or
    AnomalyForest, in the order skl2onnx (or our anomaly converter) numbers them."""
    if isinstance(classifier, GradientBoostingClassifier):
        return [_cart_tree(e.tree_) for e in classifier.estimators_[:, 0]]
    if isinstance(classifier, AnomalyForest):
        return [_cart_tree(e.tree_) for e in classifier.estimators_]
    if isinstance(classifier, HistGradientBoostingClassifier):
        out = []
        for (predictor,) in classifier._predictors:
            nodes = predictor.nodes
            out.append(
                SklearnTree(
                    is_leaf=nodes["is_leaf"].astype(bool),
                    column=nodes["feature_idx"].astype(np.int64),
                    threshold=nodes["num_threshold"].astype(np.float64),
                    left=nodes["left"].astype(np.int64),
                    right=nodes["right"].astype(np.int64),
                    cover=nodes["count"].astype(np.float64),
                )
            )
        return out
    raise ExplanationDataError(f"no tree covers for {type(classifier).__name__}")


def add_explanation_data(model: ModelProto, pipeline: Pipeline, training_rows: Any) -> None:
    """Writes the covers (tree ensembles) or the reference (scorecards) into ``model``, then reads
    them back as the runtime will; raises ExplanationDataError naming the tree and node or the
    attribute that is wrong."""
    classifier = pipeline.steps[-1][1]
    try:
        if isinstance(classifier, LogisticRegression):
            columns = pipeline[:-1].transform(training_rows)
            reference = np.asarray(columns, dtype=np.float64).mean(axis=0)
            model.metadata_props.add(key=REFERENCE_KEY, value=encode_reference(reference))
            read_scorecard(model)
        else:
            _write_covers(model, sklearn_trees(classifier))
            read_tree_ensemble(model)
    except UnexplainableModel as e:
        raise ExplanationDataError(str(e)) from e


def _write_covers(model: ModelProto, trees: list[SklearnTree]) -> None:
    node = find_node(model, TREE_OPS)
    if node is None:
        raise ExplanationDataError(f"graph {model.graph.name!r} has no tree-ensemble node")
    attrs = attributes(node)
    tree_ids, node_ids = attrs["nodes_treeids"], attrs["nodes_nodeids"]
    if len(set(tree_ids)) != len(trees):
        raise ExplanationDataError(
            f"the graph has {len(set(tree_ids))} trees, the trained model {len(trees)}"
        )
    covers = []
    for k, (tree_id, node_id) in enumerate(zip(tree_ids, node_ids, strict=True)):
        where = f"tree {tree_id} node {node_id}"
        if not 0 <= tree_id < len(trees) or not 0 <= node_id < trees[tree_id].cover.size:
            raise ExplanationDataError(f"{where} of the graph is not in the trained model")
        tree = trees[tree_id]
        _check_node(where, k, attrs, tree, node_id)
        covers.append(float(tree.cover[node_id]))
    if len(set(zip(tree_ids, node_ids, strict=True))) != sum(t.cover.size for t in trees):
        raise ExplanationDataError("the graph's nodes are not the trained model's nodes")
    written = onnx.helper.make_attribute(COVERS_ATTRIBUTE, covers)
    # In place, so the graph differs from the exporter's only in the covers' values.
    existing = [a for a in node.attribute if a.name == COVERS_ATTRIBUTE]
    if existing:
        existing[0].CopyFrom(written)
    else:
        node.attribute.append(written)


def _check_node(where: str, k: int, attrs: dict[str, Any], tree: SklearnTree, i: int) -> None:
    """skl2onnx's node ``k`` is sklearn's node ``i``: same kind, column, children, threshold."""
    mode = attrs["nodes_modes"][k].decode()
    if (mode == "LEAF") != bool(tree.is_leaf[i]):
        raise ExplanationDataError(f"{where}: {mode} in the graph, not in the trained model")
    if mode == "LEAF":
        return
    graph = (
        int(attrs["nodes_featureids"][k]),
        int(attrs["nodes_truenodeids"][k]),
        int(attrs["nodes_falsenodeids"][k]),
    )
    trained = (int(tree.column[i]), int(tree.left[i]), int(tree.right[i]))
    if graph != trained:
        raise ExplanationDataError(
            f"{where}: (column, true, false) is {graph} in the graph but {trained} in the "
            "trained model"
        )
    threshold = np.float32(attrs["nodes_values"][k])
    expected = np.float32(tree.threshold[i])
    if abs(float(threshold) - float(expected)) > THRESHOLD_ULPS * abs(float(np.spacing(expected))):
        raise ExplanationDataError(
            f"{where}: threshold {threshold!r} in the graph but {tree.threshold[i]!r} in the "
            "trained model"
        )
