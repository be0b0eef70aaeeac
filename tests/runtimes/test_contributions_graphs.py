"""The explainer on graphs made for the purpose, and the graphs it refuses.

A hand-made tree ensemble uses what the demo models do not: every ordering mode, missing values
sent either way, a column tested twice on one path and a one-leaf tree. Its contributions are
checked against Shapley values computed by brute force from the path-dependent definition
(Lundberg et al. 2018, Algorithm 1: every subset of columns, expectations weighted by the
covers) and against onnxruntime's score. Graphs whose covers are missing or inconsistent, whose
nodes the explainer does not implement, or whose columns do not each come from one feature are
refused with an error naming the problem; so is an anomaly forest's graph whose score is not
exp(constant x the trees' summed path lengths).
"""

from __future__ import annotations

from itertools import combinations
from math import factorial
from pathlib import Path
from typing import NamedTuple

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import ModelProto, helper

from runtimes.explain import Explainer, UnexplainableModel
from runtimes.explain.linear import REFERENCE_KEY
from runtimes.manifest import ARTIFACT_FILE, Manifest, NumberFeature, Training
from runtimes.training.build import export_onnx, train
from runtimes.training.explain_data import ExplanationDataError, add_explanation_data
from runtimes.training.specs import MODEL_SPECS


class Node(NamedTuple):
    """One node of the hand-made ensemble; ``nan_true``: a missing value takes the true branch."""

    tree: int
    node: int
    column: int
    mode: str
    threshold: float
    true: int
    false: int
    nan_true: bool
    cover: float
    weight: float


NODES = [
    Node(*n)
    for n in [
        (0, 0, 0, "BRANCH_LT", 0.5, 1, 2, True, 100.0, 0.0),
        (0, 1, 1, "BRANCH_LEQ", 2.0, 3, 4, False, 60.0, 0.0),
        (0, 2, 0, "BRANCH_GTE", 3.0, 5, 6, False, 40.0, 0.0),
        (0, 3, 0, "LEAF", 0.0, 0, 0, False, 20.0, 1.5),
        (0, 4, 0, "LEAF", 0.0, 0, 0, False, 40.0, -0.5),
        (0, 5, 0, "LEAF", 0.0, 0, 0, False, 10.0, 2.0),
        (0, 6, 2, "BRANCH_GT", -1.0, 7, 8, True, 30.0, 0.0),
        (0, 7, 0, "LEAF", 0.0, 0, 0, False, 12.0, 0.25),
        (0, 8, 0, "LEAF", 0.0, 0, 0, False, 18.0, -1.0),
        (1, 0, 2, "BRANCH_LEQ", 1.0, 1, 2, False, 100.0, 0.0),
        (1, 1, 1, "BRANCH_LT", -2.0, 3, 4, True, 70.0, 0.0),
        (1, 2, 0, "LEAF", 0.0, 0, 0, False, 30.0, -0.7),
        (1, 3, 0, "LEAF", 0.0, 0, 0, False, 25.0, 0.9),
        (1, 4, 0, "LEAF", 0.0, 0, 0, False, 45.0, 0.3),
        (2, 0, 0, "LEAF", 0.0, 0, 0, False, 100.0, 0.1),
    ]
]
BASE = 0.2
FEATURES = ("x0", "x1", "x2")


def _manifest() -> Manifest:
    return Manifest(
        name="toy",
        version="1",
        features=tuple(
            NumberFeature(name=n, min=-10, max=10, required=False, absent="missing")
            for n in FEATURES
        ),
        artifact_sha256="0" * 64,
        training=Training(
            algorithm="hand-made",
            seed=0,
            rows=100,
            heldout_rows=0,
            data_fingerprint="0" * 64,
            heldout_auc=0.5,
            libraries={},
        ),
        baselines={},
    )


def _toy(nodes: list[Node] = NODES, columns: str = "plain") -> ModelProto:
    """x0, x1, x2 concatenated (``columns="mixed"``: the second column is x0 + x1) into a
    TreeEnsembleRegressor with the given nodes."""
    inputs = [helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, [None, 1]) for n in FEATURES]
    steps = []
    parts = list(FEATURES)
    if columns == "mixed":
        steps.append(helper.make_node("Add", ["x0", "x1"], ["x01"]))
        parts = ["x0", "x01", "x2"]
    steps.append(helper.make_node("Concat", parts, ["X"], axis=1))
    leaves = [n for n in nodes if n.mode == "LEAF"]
    steps.append(
        helper.make_node(
            "TreeEnsembleRegressor",
            ["X"],
            ["score"],
            domain="ai.onnx.ml",
            n_targets=1,
            aggregate_function="SUM",
            post_transform="NONE",
            base_values=[BASE],
            nodes_treeids=[n.tree for n in nodes],
            nodes_nodeids=[n.node for n in nodes],
            nodes_featureids=[n.column for n in nodes],
            nodes_modes=[n.mode for n in nodes],
            nodes_values=[n.threshold for n in nodes],
            nodes_truenodeids=[n.true for n in nodes],
            nodes_falsenodeids=[n.false for n in nodes],
            nodes_missing_value_tracks_true=[int(n.nan_true) for n in nodes],
            nodes_hitrates=[n.cover for n in nodes],
            target_treeids=[n.tree for n in leaves],
            target_nodeids=[n.node for n in leaves],
            target_ids=[0] * len(leaves),
            target_weights=[n.weight for n in leaves],
        )
    )
    output = helper.make_tensor_value_info("score", onnx.TensorProto.FLOAT, [None, 1])
    graph = helper.make_graph(steps, "toy", inputs, [output])
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)]
    return helper.make_model(graph, opset_imports=opsets, ir_version=8)


def _goes_true(mode: str, x: np.float32, t: np.float32, nan_true: bool) -> bool:
    if np.isnan(x):
        return nan_true
    outcomes = {"BRANCH_LEQ": x <= t, "BRANCH_LT": x < t, "BRANCH_GTE": x >= t, "BRANCH_GT": x > t}
    return bool(outcomes[mode])


def _expectation(row: np.ndarray, known: frozenset[int]) -> float:
    """Algorithm 1's E[f(x) | x_S]: known columns follow the row, the others both children,
    weighted by their covers (thresholds and weights as the graph holds them, in float32)."""
    by_node = {(n.tree, n.node): n for n in NODES}

    def walk(tree: int, node: int) -> float:
        n = by_node[(tree, node)]
        if n.mode == "LEAF":
            return float(np.float32(n.weight))
        if n.column in known:
            goes_true = _goes_true(n.mode, row[n.column], np.float32(n.threshold), n.nan_true)
            return walk(tree, n.true if goes_true else n.false)
        true, false = by_node[(tree, n.true)], by_node[(tree, n.false)]
        return (true.cover * walk(tree, n.true) + false.cover * walk(tree, n.false)) / n.cover

    return float(np.float32(BASE)) + sum(walk(tree, 0) for tree in sorted({n.tree for n in NODES}))


def _brute_force_shapley(row: np.ndarray) -> np.ndarray:
    m = row.size
    phi = np.zeros(m)
    for i in range(m):
        others = [j for j in range(m) if j != i]
        for size in range(m):
            weight = factorial(size) * factorial(m - size - 1) / factorial(m)
            for subset in combinations(others, size):
                known = frozenset(subset)
                phi[i] += weight * (_expectation(row, known | {i}) - _expectation(row, known))
    return phi


def _rows() -> np.ndarray:
    """Values at, just beside and between every threshold, and missing values."""
    rng = np.random.default_rng(5)
    edges = np.array([0.5, 2.0, 3.0, -1.0, 1.0, -2.0], dtype=np.float32)
    special = np.concatenate(
        [edges, np.nextafter(edges, np.float32(-np.inf)), np.nextafter(edges, np.float32(np.inf))]
    )
    pool = np.concatenate([special, rng.uniform(-4, 4, 40).astype(np.float32), [np.nan] * 6])
    return rng.choice(pool, size=(400, 3)).astype(np.float32)


def test_hand_made_trees_give_brute_force_shapley_values_and_onnxruntimes_score() -> None:
    model = _toy()
    explainer = Explainer.for_artifact(model.SerializeToString(), _manifest())
    rows = _rows()
    feed = {name: rows[:, [k]] for k, name in enumerate(FEATURES)}
    ours = explainer.contributions(feed)

    expected = np.array([_brute_force_shapley(row) for row in rows])
    np.testing.assert_allclose(ours.values, expected, rtol=0, atol=1e-12)
    assert ours.base_value == pytest.approx(_expectation(rows[0], frozenset()), abs=1e-12)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (scores,) = session.run(None, feed)
    np.testing.assert_allclose(ours.margins, scores[:, 0], rtol=0, atol=1e-6)


def _refusal(model: ModelProto, manifest: Manifest | None = None) -> str:
    with pytest.raises(UnexplainableModel) as refused:
        Explainer.for_artifact(model, manifest or _manifest())
    return str(refused.value)


def _with(row: int, **change: object) -> list[Node]:
    """NODES with one node changed."""
    changed = list(NODES)
    changed[row] = NODES[row]._replace(**change)
    return changed


def test_a_graph_without_training_covers_is_refused() -> None:
    defaults = [n._replace(cover=1.0) for n in NODES]
    message = _refusal(_toy(defaults))
    assert "nodes_hitrates are all 1.0" in message and "scoregate models build" in message
    assert "toy" in message

    model = _toy()
    (tree_node,) = [n for n in model.graph.node if n.op_type == "TreeEnsembleRegressor"]
    (hitrates,) = [a for a in tree_node.attribute if a.name == "nodes_hitrates"]
    tree_node.attribute.remove(hitrates)
    assert "no training covers (nodes_hitrates absent" in _refusal(model)


def test_inconsistent_covers_are_refused_naming_tree_and_node() -> None:
    # Tree 0 node 5 covers 10 of node 2's 40 rows; say 15, and 15 + 30 is not 40.
    message = _refusal(_toy(_with(5, cover=15.0)))
    assert "tree 0 node 2 has cover 40 but its children (nodes 5 and 6) have 15 + 30" in message
    assert "the covers are inconsistent" in message


def test_a_comparison_the_explainer_does_not_implement_is_refused_naming_it() -> None:
    message = _refusal(_toy(_with(1, mode="BRANCH_EQ")))
    assert "tree 0 node 1: mode BRANCH_EQ is not supported" in message


def test_a_column_made_of_two_features_is_refused_naming_it() -> None:
    message = _refusal(_toy(columns="mixed"))
    assert "column 1 of 'X' changes with several features (x0, x1)" in message


@pytest.fixture(scope="module")
def served_models(model_dir: Path) -> dict[str, ModelProto]:
    return {
        f"{s.name}-v{s.version}": onnx.load(str(model_dir / s.name / s.version / ARTIFACT_FILE))
        for s in MODEL_SPECS
    }


def test_a_demo_ensemble_with_a_wrong_cover_is_refused(
    served_models: dict[str, ModelProto], manifests: dict[str, Manifest]
) -> None:
    model = ModelProto()
    model.CopyFrom(served_models["card-fraud-v1"])
    (tree_node,) = [n for n in model.graph.node if n.op_type == "TreeEnsembleClassifier"]
    (hitrates,) = [a for a in tree_node.attribute if a.name == "nodes_hitrates"]
    tree_ids = next(a for a in tree_node.attribute if a.name == "nodes_treeids").ints
    root_of_tree_3 = list(tree_ids).index(3)
    hitrates.floats[root_of_tree_3] += 1.0
    message = _refusal(model, manifests["card-fraud-v1"])
    assert message.startswith("card-fraud-v1: TreeEnsembleClassifier")
    assert "tree 3 node 0 has cover" in message and "inconsistent" in message


def test_a_scorecard_without_its_reference_is_refused(
    served_models: dict[str, ModelProto], manifests: dict[str, Manifest]
) -> None:
    model = ModelProto()
    model.CopyFrom(served_models["credit-risk-v1"])
    del model.metadata_props[:]
    message = _refusal(model, manifests["credit-risk-v1"])
    assert f"no {REFERENCE_KEY!r} metadata" in message and "credit-risk-v1" in message


def _anomaly_graph(served_models: dict[str, ModelProto]) -> ModelProto:
    model = ModelProto()
    model.CopyFrom(served_models["trade-anomaly-v1"])
    return model


def test_the_anomaly_forests_margin_is_read_from_its_graph(
    served_models: dict[str, ModelProto], manifests: dict[str, Manifest]
) -> None:
    """The scale (-ln 2 / (T c(psi))) is the graph's Mul constant, the post-transform its Exp."""
    model = _anomaly_graph(served_models)
    explainer = Explainer.for_artifact(model, manifests["trade-anomaly-v1"])
    (mul,) = [n for n in model.graph.node if n.op_type == "Mul"]
    (constant,) = [i for i in model.graph.initializer if i.name in mul.input]
    assert explainer.link.scale == float(onnx.numpy_helper.to_array(constant))
    assert explainer.link.post_transform == "EXP"


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ("sigmoid", "'margin' feeds Sigmoid"),
        ("swapped", "is not column 1 of the Concat that makes 'probabilities'"),
        ("scaled-by-input", "not by one finite constant"),
    ],
)
def test_an_anomaly_graph_wired_otherwise_is_refused_naming_where(
    served_models: dict[str, ModelProto], manifests: dict[str, Manifest], change: str, named: str
) -> None:
    """Contributions to log s only where the graph computes s = exp(scale * sum)."""
    model = _anomaly_graph(served_models)
    nodes = {n.op_type: n for n in model.graph.node if n.op_type in ("Mul", "Exp")}
    if change == "sigmoid":
        nodes["Exp"].op_type = "Sigmoid"
    elif change == "swapped":
        (concat,) = [n for n in model.graph.node if "probabilities" in n.output]
        first, second = concat.input
        concat.input[:] = [second, first]
    else:
        nodes["Mul"].input[1] = "notional"
    message = _refusal(model, manifests["trade-anomaly-v1"])
    assert message.startswith("trade-anomaly-v1: TreeEnsembleRegressor")
    assert named in message


def test_the_builder_refuses_a_graph_whose_nodes_are_not_the_trained_trees() -> None:
    (spec,) = [s for s in MODEL_SPECS if (s.name, s.version) == ("card-fraud", "1")]
    trained = train(spec)
    model = export_onnx(trained.pipeline, spec)
    (tree_node,) = [n for n in model.graph.node if n.op_type == "TreeEnsembleClassifier"]
    attrs = {a.name: a for a in tree_node.attribute}
    # Swap the children of tree 5's root: the graph no longer scores what sklearn trained.
    k = list(attrs["nodes_treeids"].ints).index(5)
    true, false = attrs["nodes_truenodeids"].ints[k], attrs["nodes_falsenodeids"].ints[k]
    attrs["nodes_truenodeids"].ints[k], attrs["nodes_falsenodeids"].ints[k] = false, true
    with pytest.raises(ExplanationDataError) as refused:
        add_explanation_data(model, trained.pipeline, trained.train)
    assert "tree 5 node 0: (column, true, false)" in str(refused.value)
