"""A served graph's tree ensemble, read from its ``TreeEnsembleClassifier`` (or ``Regressor``) node.

What is read is what onnxruntime scores: per tree, each node's input column, threshold, mode,
true and false children, where a missing value (NaN) goes, the leaf weights of the positive
class, and the ensemble's base value and post-transform. Path-dependent TreeSHAP also needs each
node's training cover (how many training rows reached it); the builder writes those into the
node's ``nodes_hitrates`` attribute, which onnxruntime does not compute with. A graph whose
hitrates are skl2onnx's default (all 1.0) or do not add up (an internal node's cover is not the
sum of its children's) is refused, naming the tree and node: its explanation would be wrong.

Only what is read exactly is accepted: one score (a binary classifier's positive class, or a
single-target regressor) summed over the trees, ordering comparisons (``BRANCH_LEQ``,
``BRANCH_LT``, ``BRANCH_GTE``, ``BRANCH_GT``), and a ``NONE`` or ``LOGISTIC`` post-transform;
anything else is refused, naming it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import ModelProto, NodeProto

from runtimes.explain.errors import UnexplainableModel

ML_DOMAIN = "ai.onnx.ml"
TREE_OPS = ("TreeEnsembleClassifier", "TreeEnsembleRegressor")
COVERS_ATTRIBUTE = "nodes_hitrates"
LEAF = "LEAF"
BRANCH_MODES = ("BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT")
POST_TRANSFORMS = ("NONE", "LOGISTIC")
# Covers are float32 in the attribute: integer counts up to 2**24 are exact, and a weighted
# cover is compared to the sum of its children's within float32 rounding.
COVER_RELATIVE_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Tree:
    """One tree, its nodes indexed 0..n-1 in the order the graph lists them."""

    tree_id: int
    node_ids: np.ndarray
    """The graph's node id of each node."""
    column: np.ndarray
    """int64: the input column a branch compares (unused for a leaf)."""
    threshold: np.ndarray
    """float32: what the column is compared with."""
    mode: tuple[str, ...]
    """``LEAF`` or one of BRANCH_MODES."""
    true_child: np.ndarray
    """int64: index of the node a satisfied comparison leads to (-1 for a leaf)."""
    false_child: np.ndarray
    missing_true: np.ndarray
    """bool: a missing value (NaN) takes the true branch (else the false one)."""
    value: np.ndarray
    """float64: a leaf's weight for the explained score (0 for a branch)."""
    cover: np.ndarray
    """float64: training rows (or their weight) that reached the node."""
    root: int

    def node_label(self, index: int) -> str:
        return f"tree {self.tree_id} node {int(self.node_ids[index])}"


@dataclass(frozen=True)
class TreeEnsemble:
    """The score a tree-ensemble node computes: ``base_value`` plus, per tree, the weight of the
    leaf a row reaches; ``post_transform`` turns that raw margin into the probability."""

    node_name: str
    input: str
    """The tensor the node reads: [N, columns], the output of the graph's preprocessing."""
    trees: tuple[Tree, ...]
    base_value: float
    post_transform: str


def find_node(model: ModelProto, op_types: Sequence[str]) -> NodeProto | None:
    """The one node of ``op_types`` in the graph (None if there is none; refused if several)."""
    found = [n for n in model.graph.node if n.op_type in op_types and n.domain == ML_DOMAIN]
    if len(found) > 1:
        raise UnexplainableModel(
            f"graph {model.graph.name!r} has {len(found)} {'/'.join(op_types)} nodes; the "
            "explainer reads one"
        )
    return found[0] if found else None


def attributes(node: NodeProto) -> dict[str, Any]:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _floats(attrs: dict[str, Any], name: str) -> np.ndarray | None:
    """A float attribute, from its ``*_as_tensor`` form where the graph uses that."""
    tensor = attrs.get(f"{name}_as_tensor")
    if tensor is not None:
        return np.asarray(onnx.numpy_helper.to_array(tensor), dtype=np.float64).ravel()
    value = attrs.get(name)
    return None if value is None else np.asarray(value, dtype=np.float64)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read_tree_ensemble(model: ModelProto) -> TreeEnsemble:
    """The graph's tree ensemble with its covers; raises UnexplainableModel naming what is
    missing or unsupported."""
    node = find_node(model, TREE_OPS)
    if node is None:
        raise UnexplainableModel(f"graph {model.graph.name!r} has no tree-ensemble node")
    label = f"{node.op_type} {node.name!r} of graph {model.graph.name!r}"
    attrs = attributes(node)
    post_transform = _text(attrs.get("post_transform", b"NONE"))
    if post_transform not in POST_TRANSFORMS:
        raise UnexplainableModel(
            f"{label}: post_transform {post_transform} is not one of {', '.join(POST_TRANSFORMS)}"
        )
    aggregate = _text(attrs.get("aggregate_function", b"SUM"))
    if aggregate != "SUM":
        raise UnexplainableModel(f"{label}: aggregate_function {aggregate} is not SUM")
    base_value = _base_value(label, attrs)
    weights = _leaf_weights(label, node, attrs)
    trees = _trees(label, attrs, weights)
    return TreeEnsemble(
        node_name=node.name,
        input=node.input[0],
        trees=trees,
        base_value=base_value,
        post_transform=post_transform,
    )


def _base_value(label: str, attrs: dict[str, Any]) -> float:
    base = _floats(attrs, "base_values")
    if base is None or base.size == 0:
        return 0.0
    if base.size != 1:
        raise UnexplainableModel(
            f"{label}: {base.size} base values; the explainer reads one score (a binary "
            "classifier's positive class or a single target)"
        )
    return float(base[0])


def _leaf_weights(
    label: str, node: NodeProto, attrs: dict[str, Any]
) -> dict[tuple[int, int], float]:
    """Summed leaf weight per (tree id, node id), for the one score the node computes."""
    prefix = "class" if node.op_type == "TreeEnsembleClassifier" else "target"
    if prefix == "class":
        labels = attrs.get("classlabels_int64s") or attrs.get("classlabels_strings") or []
        if len(labels) != 2:
            raise UnexplainableModel(
                f"{label}: {len(labels)} class labels; the explainer reads binary classifiers"
            )
    elif int(attrs.get("n_targets", 1)) != 1:
        raise UnexplainableModel(f"{label}: {attrs['n_targets']} targets; it reads one")
    ids = attrs.get(f"{prefix}_ids", [])
    if len(set(ids)) > 1:
        raise UnexplainableModel(
            f"{label}: leaf weights for {prefix} ids {sorted(set(ids))}; the explainer reads "
            "one score (onnxruntime's binary case: the positive class's weights only)"
        )
    values = _floats(attrs, f"{prefix}_weights")
    weights: dict[tuple[int, int], float] = {}
    tree_ids, node_ids = attrs.get(f"{prefix}_treeids", []), attrs.get(f"{prefix}_nodeids", [])
    for tree_id, node_id, w in zip(
        tree_ids, node_ids, [] if values is None else values, strict=True
    ):
        key = (int(tree_id), int(node_id))
        weights[key] = weights.get(key, 0.0) + float(w)
    return weights


def _trees(
    label: str, attrs: dict[str, Any], weights: dict[tuple[int, int], float]
) -> tuple[Tree, ...]:
    tree_ids = np.asarray(attrs["nodes_treeids"], dtype=np.int64)
    n = tree_ids.size
    thresholds = _floats(attrs, "nodes_values")
    covers = _floats(attrs, COVERS_ATTRIBUTE)
    if covers is None or covers.size != n:
        raise UnexplainableModel(
            f"{label}: no training covers ({COVERS_ATTRIBUTE} absent or not one per node); "
            "rebuild the artifact with `scoregate models build`"
        )
    if np.all(covers == 1.0):
        raise UnexplainableModel(
            f"{label}: no training covers ({COVERS_ATTRIBUTE} are all 1.0, the exporter's "
            "default); rebuild the artifact with `scoregate models build`"
        )
    if thresholds is None:
        raise UnexplainableModel(f"{label}: no nodes_values (thresholds)")
    columns: dict[str, np.ndarray] = {
        "node_ids": np.asarray(attrs["nodes_nodeids"], dtype=np.int64),
        "column": np.asarray(attrs["nodes_featureids"], dtype=np.int64),
        "threshold": np.asarray(thresholds, dtype=np.float32),
        "true": np.asarray(attrs["nodes_truenodeids"], dtype=np.int64),
        "false": np.asarray(attrs["nodes_falsenodeids"], dtype=np.int64),
        "missing": np.asarray(attrs.get("nodes_missing_value_tracks_true", [0] * n), dtype=bool),
        "cover": covers,
    }
    modes = [_text(m) for m in attrs["nodes_modes"]]
    trees = []
    for tree_id in dict.fromkeys(int(t) for t in tree_ids):
        rows = np.flatnonzero(tree_ids == tree_id)
        trees.append(_tree(label, tree_id, rows, columns, [modes[r] for r in rows], weights))
    used = {(int(tree_ids[r]), int(columns["node_ids"][r])) for r in range(n)}
    stray = sorted(set(weights) - used)
    if stray:
        raise UnexplainableModel(f"{label}: leaf weights for unknown nodes {stray[:3]}")
    return tuple(trees)


def _tree(
    label: str,
    tree_id: int,
    rows: np.ndarray,
    columns: dict[str, np.ndarray],
    modes: list[str],
    weights: dict[tuple[int, int], float],
) -> Tree:
    node_ids = columns["node_ids"][rows]
    index = {int(node_id): i for i, node_id in enumerate(node_ids)}
    if len(index) != rows.size:
        raise UnexplainableModel(f"{label}: tree {tree_id} repeats a node id")
    where = f"{label}: tree {tree_id}"
    true_child = np.full(rows.size, -1, dtype=np.int64)
    false_child = np.full(rows.size, -1, dtype=np.int64)
    value = np.zeros(rows.size, dtype=np.float64)
    for i, mode in enumerate(modes):
        node_id = int(node_ids[i])
        if mode == LEAF:
            value[i] = weights.get((tree_id, node_id), 0.0)
            continue
        if mode not in BRANCH_MODES:
            raise UnexplainableModel(
                f"{where} node {node_id}: mode {mode} is not supported (only LEAF and "
                f"{', '.join(BRANCH_MODES)})"
            )
        if (tree_id, node_id) in weights:
            raise UnexplainableModel(f"{where} node {node_id}: a branch carries a leaf weight")
        for child, out in (
            (columns["true"][rows[i]], true_child),
            (columns["false"][rows[i]], false_child),
        ):
            if int(child) not in index:
                raise UnexplainableModel(f"{where} node {node_id}: child {child} does not exist")
            out[i] = index[int(child)]
    referenced = set(true_child[true_child >= 0].tolist()) | set(
        false_child[false_child >= 0].tolist()
    )
    roots = [i for i in range(rows.size) if i not in referenced]
    if len(roots) != 1:
        raise UnexplainableModel(f"{where}: {len(roots)} roots; a tree has one")
    tree = Tree(
        tree_id=tree_id,
        node_ids=node_ids,
        column=columns["column"][rows],
        threshold=columns["threshold"][rows],
        mode=tuple(modes),
        true_child=true_child,
        false_child=false_child,
        missing_true=columns["missing"][rows],
        value=value,
        cover=columns["cover"][rows],
        root=roots[0],
    )
    check_covers(label, tree)
    return tree


def check_covers(label: str, tree: Tree) -> None:
    """Every node is reached once from the root, and each branch's cover is positive and the sum
    of its children's; raises UnexplainableModel naming the first node where not."""
    seen = np.zeros(tree.cover.size, dtype=bool)
    stack = [tree.root]
    while stack:
        i = stack.pop()
        if seen[i]:
            raise UnexplainableModel(f"{label}: {tree.node_label(i)} is reached twice")
        seen[i] = True
        if tree.mode[i] == LEAF:
            if not tree.cover[i] >= 0:
                raise UnexplainableModel(
                    f"{label}: {tree.node_label(i)} has cover {tree.cover[i]:g}"
                )
            continue
        t, f = int(tree.true_child[i]), int(tree.false_child[i])
        parent, children = tree.cover[i], tree.cover[t] + tree.cover[f]
        if not parent > 0 or abs(parent - children) > COVER_RELATIVE_TOLERANCE * parent:
            raise UnexplainableModel(
                f"{label}: {tree.node_label(i)} has cover {parent:g} but its children (nodes "
                f"{int(tree.node_ids[t])} and {int(tree.node_ids[f])}) have {tree.cover[t]:g} + "
                f"{tree.cover[f]:g}; the covers are inconsistent"
            )
        stack.extend((t, f))
    if not seen.all():
        lost = int(np.flatnonzero(~seen)[0])
        raise UnexplainableModel(f"{label}: {tree.node_label(lost)} is not reached from the root")
