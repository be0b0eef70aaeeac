"""The ONNX graph's side of the runtime contract, free of KServe: its inputs, its outputs, and
the session options a served artifact runs with.

The graph takes one [N, 1] input per feature: FP32 for numbers and booleans, BYTES (strings) for
categories. Replay (``scoregate lineage replay``) opens the artifact with the same options and
scores through the same ``run_rows``, so a replayed score is computed exactly as the runtime
computed it.

A row's score must not depend on which other rows share its call: micro-batching puts concurrent
callers' rows together, and replay scores a row alone. onnxruntime's CPU kernels give every row
of an [N, F] input the same float32 for any N >= 2, in any position, but take another path for a
single row (the linear classifier's one-row product rounds differently, by one ulp). So
``run_rows`` never runs one row alone: a lone row is run twice in one [2, 1] call and the first
answer kept. The builder refuses an artifact for which that does not hold
(``check_batch_invariance``), and ``scoring_environment`` names everything else a replay must
share to reproduce a score bit for bit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnxruntime as ort

from runtimes.manifest import CategoryFeature, Feature

FP32 = "FP32"
BYTES = "BYTES"
INT64 = "INT64"


@dataclass(frozen=True)
class InputSpec:
    """What the graph accepts for one feature."""

    name: str
    datatype: str
    categories: frozenset[str] | None = None
    missing_allowed: bool = False
    """The feature is declared ``absent: missing``: its missing value (NaN; the empty string for
    a category) is a valid input, which the graph handles."""

    @property
    def onnx_type(self) -> str:
        return "tensor(string)" if self.datatype == BYTES else "tensor(float)"

    def metadata(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": [-1, 1]}


def input_specs(features: Sequence[Feature]) -> tuple[InputSpec, ...]:
    return tuple(
        InputSpec(f.name, BYTES, frozenset(f.categories), f.absent == "missing")
        if isinstance(f, CategoryFeature)
        else InputSpec(f.name, FP32, None, f.absent == "missing")
        for f in features
    )


CONTRIBUTIONS = "contributions"
"""The optional output: each feature's contribution to the row's raw margin (log-odds; the log
of the anomaly score for an isolation forest), FP32 [N, F] in the manifest's feature order
(``runtimes.explain``); given only when requested, with the base value in the response
parameter ``contributions_base``."""

OUTPUT_METADATA: list[dict[str, Any]] = [
    {"name": "probabilities", "datatype": FP32, "shape": [-1, 2]},
    {"name": "label", "datatype": INT64, "shape": [-1]},
]


PROVIDER = "CPUExecutionProvider"
INTRA_OP_THREADS = 1
INTER_OP_THREADS = 1
# The least rows per onnxruntime run (see the module docstring).
MIN_ROWS_PER_RUN = 2


def session_options() -> ort.SessionOptions:
    # Small tabular graphs: one thread per run is fastest, and concurrency comes from running
    # several requests at once on the executor instead of splitting one across cores.
    options = ort.SessionOptions()
    options.intra_op_num_threads = INTRA_OP_THREADS
    options.inter_op_num_threads = INTER_OP_THREADS
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return options


def open_session(artifact: str | bytes) -> ort.InferenceSession:
    """An artifact (a path, or its bytes) as the runtime and replay run it."""
    return ort.InferenceSession(artifact, sess_options=session_options(), providers=[PROVIDER])


def scoring_environment() -> str:
    """What, besides the artifact and the inputs, decides a score's last bit: recorded with every
    model decision, and compared by replay. ``key=value`` pairs joined by ``"; "``."""
    return "; ".join(f"{k}={v}" for k, v in environment_items())


def environment_items() -> list[tuple[str, str]]:
    return [
        ("onnxruntime", ort.__version__),
        ("provider", PROVIDER),
        ("intra_op_threads", str(INTRA_OP_THREADS)),
        ("inter_op_threads", str(INTER_OP_THREADS)),
        ("execution_mode", "sequential"),
        ("min_rows_per_run", str(MIN_ROWS_PER_RUN)),
    ]


def parse_environment(text: str) -> dict[str, str]:
    """``scoring_environment()``'s text back as a mapping (unparseable parts are skipped)."""
    pairs = (part.partition("=") for part in text.split("; ") if "=" in part)
    return {key: value for key, _, value in pairs}


def run_rows(
    session: ort.InferenceSession, names: Sequence[str], feed: Mapping[str, np.ndarray]
) -> list[np.ndarray]:
    """``session.run`` of the named outputs over the rows in ``feed``, each row scored the same
    whatever shares its call (see the module docstring)."""
    rows = len(next(iter(feed.values())))
    if rows >= MIN_ROWS_PER_RUN:
        return [np.asarray(x) for x in session.run(list(names), dict(feed))]
    doubled = {name: np.concatenate((column, column)) for name, column in feed.items()}
    return [np.asarray(x)[:rows] for x in session.run(list(names), doubled)]


class BatchDependentScores(ValueError):
    """A row scored differently depending on the rows that shared its call."""


# Batch sizes and positions the invariance check tries: a row alone, in pairs, and in batches
# as large as micro-batching and ScoreBatch make them.
INVARIANCE_BATCHES = (1, 2, 3, 20, 200, 1000)


def check_batch_invariance(
    session: ort.InferenceSession, output: str, feed: Mapping[str, np.ndarray]
) -> int:
    """Scores every row of ``feed`` in one call, then in calls of each of INVARIANCE_BATCHES
    rows (every offset of a sliding window, for the first rows), and requires the identical
    float32 everywhere; returns the number of row scores compared. Raises BatchDependentScores
    naming the first row and the two values that differ."""
    total = len(next(iter(feed.values())))
    (reference,) = run_rows(session, [output], feed)
    compared = 0
    for size in INVARIANCE_BATCHES:
        if size > total:
            continue
        # Every row in some batch of this size, and the first rows at every position in one.
        starts = sorted(
            set(range(0, total - size + 1, size)) | set(range(min(size, total - size + 1)))
        )
        for start in starts:
            part = {name: column[start : start + size] for name, column in feed.items()}
            (scores,) = run_rows(session, [output], part)
            expected = reference[start : start + size]
            got = scores.view(np.uint32).reshape(size, -1)
            want = expected.view(np.uint32).reshape(size, -1)
            differs = np.flatnonzero((got != want).any(axis=1))
            if differs.size:
                row = int(differs[0])
                raise BatchDependentScores(
                    f"row {start + row} scores {scores[row]!r} in a call of {size} rows (at "
                    f"position {row}) but {expected[row]!r} among all {total}"
                )
            compared += size
    return compared
