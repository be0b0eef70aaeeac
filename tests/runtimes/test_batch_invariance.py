"""A row's score does not depend on the rows that share its call: every demo model gives each row
the identical float32 alone and in batches of 2, 3, 20, 200 and 1,000, in any position, as the
runtime and replay run it. Micro-batching puts concurrent callers' rows in one call and replay
scores a decision alone, so replay is exact only because this holds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest

from runtimes import graph
from runtimes.graph import BatchDependentScores, check_batch_invariance, open_session
from runtimes.manifest import load_manifests
from runtimes.training.build import onnx_inputs
from runtimes.training.datasets import sample_requests


def feed_of(
    model_dir: Path, name: str, version: str, rows: int
) -> tuple[ort.InferenceSession, dict[str, np.ndarray]]:
    manifest = load_manifests(model_dir)[(name, version)]
    session = open_session(str(model_dir / name / version / manifest.artifact))
    frame = pd.DataFrame(sample_requests(name, rows, seed=21))
    return session, onnx_inputs(manifest.features, frame)


@pytest.mark.parametrize(
    ("name", "version"),
    [
        ("card-fraud", "1"),
        ("card-fraud", "2"),
        ("churn", "1"),
        ("credit-risk", "1"),
        ("trade-anomaly", "1"),
    ],
)
def test_every_demo_model_scores_a_row_the_same_alone_and_in_any_batch(
    model_dir: Path, name: str, version: str
) -> None:
    session, feed = feed_of(model_dir, name, version, 1000)
    compared = check_batch_invariance(session, "probabilities", feed)
    # 1,000 rows alone, and every row in some batch of each size, plus the first rows at every
    # position of one.
    assert compared > 6 * 1000


def test_the_check_catches_a_model_whose_lone_rows_round_differently(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Scoring a lone row as a call of one, as onnxruntime's one-row path does it: the linear
    # scorecard's product then rounds some rows differently (by one ulp).
    monkeypatch.setattr(graph, "MIN_ROWS_PER_RUN", 1)
    session, feed = feed_of(model_dir, "credit-risk", "1", 1000)
    with pytest.raises(BatchDependentScores, match=r"in a call of 1 rows"):
        check_batch_invariance(session, "probabilities", feed)
