"""Which manifest feature each column of a model's input comes from, found in the served graph.

A tree ensemble or scorecard reads the preprocessing's output, not the request's features: a
category becomes several one-hot columns, a binned number several bin columns, a number one
column as it is, scaled or imputed. Contributions are reported per manifest feature, each the
sum of its columns' (SHAP values and points are additive over columns), so the explainer needs
the column-to-feature map, and takes it from the graph that scores rather than from the
training code: the graph up to the model node's input (``columns_model``) is run on probe rows
that vary one feature at a time from two base rows, and a column belongs to the one feature
whose variation changes it. Number probes include every constant of the preprocessing graph and
its float32 neighbours, so a step (a bin edge) is crossed wherever there is one. A column that
changes with no feature, or with several, is refused, naming it: its contribution could not be
given to one feature.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import numpy as np
import onnx
from onnx import ModelProto
from onnx.utils import Extractor

from runtimes.explain.errors import UnexplainableModel
from runtimes.graph import open_session, run_rows
from runtimes.manifest import (
    MISSING_CATEGORY,
    BooleanFeature,
    CategoryFeature,
    Feature,
    NumberFeature,
)

# Evenly and geometrically spaced probes per number, besides the graph's constants.
GRID_POINTS = 65


def columns_model(model: ModelProto, tensor: str) -> ModelProto:
    """The part of ``model`` that computes ``tensor`` from the graph's inputs."""
    inferred = onnx.shape_inference.infer_shapes(model)
    inputs = [i.name for i in model.graph.input]
    try:
        return Extractor(inferred).extract_model(inputs, [tensor])
    except ValueError as e:
        raise UnexplainableModel(
            f"graph {model.graph.name!r}: cannot isolate the preprocessing up to {tensor!r} ({e})"
        ) from e


def _graph_constants(model: ModelProto) -> np.ndarray:
    values: list[np.ndarray] = []
    for init in model.graph.initializer:
        array = onnx.numpy_helper.to_array(init)
        if array.dtype.kind == "f":
            values.append(array.astype(np.float64).ravel())
    for node in model.graph.node:
        for attribute in node.attribute:
            if attribute.floats:
                values.append(np.asarray(attribute.floats, dtype=np.float64))
            elif attribute.type == onnx.AttributeProto.FLOAT:
                values.append(np.asarray([attribute.f], dtype=np.float64))
    if not values:
        return np.zeros(0, dtype=np.float32)
    constants = np.concatenate(values).astype(np.float32)
    constants = constants[np.isfinite(constants)]
    neighbours = (np.nextafter(constants, -np.inf), np.nextafter(constants, np.inf))
    return np.unique(np.concatenate((constants, *neighbours)))


def _probes(feature: Feature, constants: np.ndarray) -> list[object]:
    missing = feature.absent == "missing"
    if isinstance(feature, CategoryFeature):
        return [*feature.categories, MISSING_CATEGORY]
    if isinstance(feature, BooleanFeature):
        return [0.0, 1.0, *([np.nan] if missing else [])]
    assert isinstance(feature, NumberFeature)
    low, high = feature.min, feature.max
    grid = [np.linspace(low, high, GRID_POINTS)]
    if high > 0:
        grid.append(np.geomspace(max(low, high * 1e-6, 1e-6), high, GRID_POINTS))
    inside = constants[(constants >= low) & (constants <= high)]
    values = np.unique(np.concatenate([*grid, inside, [low, high]]).astype(np.float32))
    return [*values.tolist(), *([np.nan] if missing else [])]


def _base_rows(features: Sequence[Feature]) -> list[list[object]]:
    """Two rows every feature differs in: the low ends, and the high ends."""
    low: list[object] = []
    high: list[object] = []
    for f in features:
        if isinstance(f, CategoryFeature):
            low.append(f.categories[0])
            high.append(f.categories[-1])
        elif isinstance(f, BooleanFeature):
            low.append(0.0)
            high.append(1.0)
        else:
            low.append(f.min)
            high.append(f.max)
    return [low, high]


def feed_of(features: Sequence[Feature], rows: list[list[object]]) -> dict[str, np.ndarray]:
    """The graph's [N, 1] inputs for ``rows`` (one value per feature, manifest order)."""
    feed: dict[str, np.ndarray] = {}
    for k, f in enumerate(features):
        values = [row[k] for row in rows]
        if isinstance(f, CategoryFeature):
            feed[f.name] = np.array(values, dtype=object).reshape(-1, 1)
        else:
            feed[f.name] = np.array(values, dtype=np.float32).reshape(-1, 1)
    return feed


class Preprocessing:
    """The served graph up to the model node's input, and the feature each column comes from."""

    def __init__(self, model: ModelProto, output: str, features: Sequence[Feature]) -> None:
        part = columns_model(model, output)
        self.output = output
        self.session = open_session(part.SerializeToString(deterministic=True))
        self._inputs = frozenset(i.name for i in self.session.get_inputs())
        self.feature_of_column = column_features(self, _graph_constants(part), features)

    def columns(self, feed: Mapping[str, np.ndarray]) -> np.ndarray:
        """float32 [N, C]: the model node's input for the rows of ``feed``."""
        part = {name: value for name, value in feed.items() if name in self._inputs}
        (columns,) = run_rows(self.session, [self.output], part)
        return np.asarray(columns, dtype=np.float32).reshape(columns.shape[0], -1)


def column_features(
    preprocessing: Preprocessing, constants: np.ndarray, features: Sequence[Feature]
) -> np.ndarray:
    """int64 [C]: the index (in ``features``) of the feature each column comes from; raises
    UnexplainableModel naming a column that no feature, or several, change."""
    probes = [_probes(f, constants) for f in features]
    bases = _base_rows(features)
    rows: list[list[object]] = []
    owner: list[int] = []
    for base in bases:
        rows.append(base)
        owner.append(-1)
        for k, values in enumerate(probes):
            for value in values:
                row = list(base)
                row[k] = value
                rows.append(row)
                owner.append(k)
    columns = preprocessing.columns(feed_of(features, rows)).astype(np.float64)
    owners = np.asarray(owner)
    changes = np.zeros((len(features), columns.shape[1]), dtype=bool)
    starts = [*np.flatnonzero(owners == -1).tolist(), len(rows)]
    for start, end in itertools.pairwise(starts):
        base, varied, which = columns[start], columns[start + 1 : end], owners[start + 1 : end]
        differs = (varied != base) & ~(np.isnan(varied) & np.isnan(base))
        for k in range(len(features)):
            changes[k] |= differs[which == k].any(axis=0)
    mapping = np.empty(columns.shape[1], dtype=np.int64)
    for column in range(columns.shape[1]):
        found = np.flatnonzero(changes[:, column])
        if found.size != 1:
            names = ", ".join(features[int(k)].name for k in found)
            what = f"several features ({names})" if found.size else "no feature"
            raise UnexplainableModel(
                f"column {column} of {preprocessing.output!r} changes with {what}; its "
                "contribution cannot be given to one manifest feature"
            )
        mapping[column] = int(found[0])
    return mapping
