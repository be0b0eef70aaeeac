"""A served graph's logistic scorecard, read from its ``LinearClassifier`` node, and its points.

The node scores each class as ``coefficients . x + intercept`` over the preprocessing output x
(one-hot categories, one-hot bins, scaled numbers, flags); the positive class's score is the raw
margin (log-odds) its LOGISTIC post-transform turns into the probability. Each input column's
points are ``coefficient * (x - reference)``, the reference being the column's mean over the
training rows, so the points of a row sum to its margin less the base value
``intercept + coefficients . reference`` (the margin of the average training row). A category's
points are those of its one-hot columns, so a category scores its weight relative to the
training mix of categories; likewise a binned number through its bins.

The reference is a training statistic the graph does not compute with: the builder writes it
into the artifact's metadata (``REFERENCE_KEY``, a JSON list of one float per input column), so
the artifact's sha256 covers it. A graph without it is refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
from onnx import ModelProto

from runtimes.explain.errors import UnexplainableModel
from runtimes.explain.trees import attributes, find_node

LINEAR_OPS = ("LinearClassifier",)
REFERENCE_KEY = "scoregate.explain.reference"
"""Model metadata key: the training mean of each column the LinearClassifier reads."""
POSITIVE_ROW = 1
POST_TRANSFORMS = ("NONE", "LOGISTIC")


@dataclass(frozen=True)
class Scorecard:
    """The positive class's linear score and the reference its points are measured from."""

    node_name: str
    input: str
    coefficients: np.ndarray
    """float64 [C]: the positive class's weight per input column."""
    intercept: float
    reference: np.ndarray
    """float64 [C]: each column's training mean."""
    post_transform: str

    @property
    def base_value(self) -> float:
        return float(self.intercept + self.coefficients @ self.reference)


def encode_reference(reference: np.ndarray) -> str:
    """The metadata value for ``reference`` (``repr`` floats: read back bit for bit)."""
    return json.dumps([float(v) for v in np.asarray(reference, dtype=np.float64)])


def read_scorecard(model: ModelProto) -> Scorecard:
    """The graph's scorecard with its reference; raises UnexplainableModel naming what is missing
    or unsupported."""
    node = find_node(model, LINEAR_OPS)
    if node is None:
        raise UnexplainableModel(f"graph {model.graph.name!r} has no LinearClassifier node")
    label = f"LinearClassifier {node.name!r} of graph {model.graph.name!r}"
    attrs = attributes(node)
    post_transform = attrs.get("post_transform", b"NONE")
    post_transform = (
        post_transform.decode() if isinstance(post_transform, bytes) else str(post_transform)
    )
    if post_transform not in POST_TRANSFORMS:
        raise UnexplainableModel(
            f"{label}: post_transform {post_transform} is not one of {', '.join(POST_TRANSFORMS)}"
        )
    intercepts = np.asarray(attrs.get("intercepts", []), dtype=np.float64)
    coefficients = np.asarray(attrs["coefficients"], dtype=np.float64)
    if intercepts.size != 2:
        raise UnexplainableModel(
            f"{label}: {intercepts.size} class scores; the explainer reads a binary classifier "
            "scoring both classes"
        )
    coefficients = coefficients.reshape(intercepts.size, -1)[POSITIVE_ROW]
    reference = _reference(label, model, coefficients.size)
    return Scorecard(
        node_name=node.name,
        input=node.input[0],
        coefficients=coefficients,
        intercept=float(intercepts[POSITIVE_ROW]),
        reference=reference,
        post_transform=post_transform,
    )


def _reference(label: str, model: ModelProto, columns: int) -> np.ndarray:
    text = next((p.value for p in model.metadata_props if p.key == REFERENCE_KEY), None)
    if text is None:
        raise UnexplainableModel(
            f"{label}: the artifact has no {REFERENCE_KEY!r} metadata (the training mean of "
            "each column); rebuild the artifact with `scoregate models build`"
        )
    try:
        values = np.asarray(json.loads(text), dtype=np.float64)
    except (ValueError, TypeError) as e:
        raise UnexplainableModel(f"{label}: {REFERENCE_KEY!r} is not a list of numbers") from e
    if values.shape != (columns,) or not np.all(np.isfinite(values)):
        raise UnexplainableModel(
            f"{label}: {REFERENCE_KEY!r} holds {values.size} values for {columns} columns"
        )
    return values


class LinearPoints:
    """A scorecard's points per group of input columns: ``values(columns)`` gives [N, n_groups]
    float64 points whose sum plus ``base_value`` is each row's raw margin."""

    def __init__(self, scorecard: Scorecard, groups: np.ndarray, n_groups: int) -> None:
        self.n_groups = n_groups
        self.base_value = scorecard.base_value
        # Columns are summed in group order, one reduction per group, the same for any batch.
        order = np.argsort(groups, kind="stable")
        self._order = order
        self._coefficients = scorecard.coefficients[order]
        self._reference = scorecard.reference[order]
        present, first = np.unique(groups[order], return_index=True)
        self._present_groups = present
        self._group_starts = first

    def values(self, columns: np.ndarray) -> np.ndarray:
        x = np.asarray(columns, dtype=np.float64)[:, self._order]
        points = self._coefficients * (x - self._reference)
        out = np.zeros((x.shape[0], self.n_groups), dtype=np.float64)
        out[:, self._present_groups] = np.add.reduceat(points, self._group_starts, axis=1)
        return out
