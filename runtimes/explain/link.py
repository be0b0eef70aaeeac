"""How a served graph turns its scoring node's output into the probability it serves.

The explainer attributes the scoring node's output; the raw margin it reports contributions to is
that output times ``scale``, and the positive-class probability is ``post_transform`` of the
margin. Both are read from the graph that scores:

- a classifier node (``TreeEnsembleClassifier``, ``LinearClassifier``): its positive-class
  score before the post-transform is the margin (scale 1), and its ``post_transform`` attribute
  (``LOGISTIC``, ``NONE``) gives the probability;
- a single-target ``TreeEnsembleRegressor`` whose score is itself a graph output: that score
  (after its own post-transform) is the margin, as for a classifier;
- a single-target ``TreeEnsembleRegressor`` inside the graph (the anomaly forest,
  ``runtimes.training.anomaly``): its output feeds one ``Mul`` by a scalar constant, which feeds
  one ``Exp``, whose output is the positive-class column of the ``Concat`` that makes the
  graph's probabilities: the margin is the constant times the node's sum (log s), the
  probability exp(margin) (``EXP``).

Any other wiring is refused, naming the node where it departs: contributions to a margin the
graph does not compute would explain nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import ModelProto, NodeProto

from runtimes.explain.errors import UnexplainableModel

EXP = "EXP"
LOGISTIC = "LOGISTIC"
NONE = "NONE"


@dataclass(frozen=True)
class Link:
    """margin = ``scale`` * the scoring node's score; probability = ``post_transform``(margin)."""

    scale: float
    post_transform: str

    def probability(self, margin: np.ndarray) -> np.ndarray:
        """float64: the positive-class probability of each margin."""
        margin = np.asarray(margin, dtype=np.float64)
        if self.post_transform == LOGISTIC:
            return np.asarray(1.0 / (1.0 + np.exp(-margin)))
        if self.post_transform == EXP:
            return np.asarray(np.exp(margin))
        return margin


def _consumers(model: ModelProto, tensor: str) -> list[NodeProto]:
    return [n for n in model.graph.node if tensor in n.input]


def _scalar(model: ModelProto, tensor: str) -> float | None:
    """The value of ``tensor`` if it is a one-element float constant of the graph."""
    arrays = [onnx.numpy_helper.to_array(i) for i in model.graph.initializer if i.name == tensor]
    for node in model.graph.node:
        if node.op_type == "Constant" and list(node.output) == [tensor]:
            arrays += [onnx.numpy_helper.to_array(a.t) for a in node.attribute if a.name == "value"]
    if len(arrays) != 1 or arrays[0].size != 1 or arrays[0].dtype.kind != "f":
        return None
    return float(arrays[0].ravel()[0])


def _only_consumer(model: ModelProto, tensor: str, op_type: str, label: str) -> NodeProto:
    found = _consumers(model, tensor)
    if len(found) != 1 or found[0].op_type != op_type:
        ops = ", ".join(n.op_type for n in found) or "nothing"
        raise UnexplainableModel(
            f"{label}: {tensor!r} feeds {ops}; the explainer reads a regressor's sum scaled by one "
            f"Mul and turned into the probability by one Exp ({op_type} expected here)"
        )
    return found[0]


def regressor_link(
    model: ModelProto,
    node: NodeProto,
    post_transform: str,
    probabilities: str,
    positive_class_index: int,
) -> Link:
    """The link of a ``TreeEnsembleRegressor`` (``post_transform`` its own): its score as it is
    when the graph outputs it, else the sum the graph scales and exponentiates into the positive
    class of ``probabilities``; raises UnexplainableModel naming where it is neither."""
    label = f"{node.op_type} {node.name!r} of graph {model.graph.name!r}"
    score = node.output[0]
    if not _consumers(model, score) and score in {o.name for o in model.graph.output}:
        return Link(1.0, post_transform)
    if post_transform != NONE:
        raise UnexplainableModel(
            f"{label}: post_transform {post_transform} before a Mul; the explainer reads a "
            "regressor's plain sum there"
        )
    mul = _only_consumer(model, score, "Mul", label)
    others = [t for t in mul.input if t != node.output[0]]
    other = others[0] if len(others) == 1 else ""
    scale = _scalar(model, other)
    if scale is None or not np.isfinite(scale) or scale == 0.0:
        raise UnexplainableModel(
            f"{label}: its Mul {mul.name!r} multiplies by {other!r}, not by one finite constant"
        )
    exp = _only_consumer(model, mul.output[0], "Exp", label)
    producers = [n for n in model.graph.node if probabilities in n.output]
    concat = producers[0] if len(producers) == 1 else None
    axis = next((a.i for a in concat.attribute if a.name == "axis"), None) if concat else None
    if (
        concat is None
        or concat.op_type != "Concat"
        or axis not in (1, -1)
        or len(concat.input) <= positive_class_index
        or concat.input[positive_class_index] != exp.output[0]
    ):
        raise UnexplainableModel(
            f"{label}: the Exp {exp.name!r} is not column {positive_class_index} of the "
            f"Concat that makes {probabilities!r}"
        )
    return Link(scale=scale, post_transform=EXP)
