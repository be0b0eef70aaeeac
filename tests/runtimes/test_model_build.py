"""The demo model build: reproducible bytes, complete manifests, working artifacts."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest

from runtimes.cli import models_main
from runtimes.manifest import (
    ARTIFACT_FILE,
    BooleanFeature,
    CategoryFeature,
    Manifest,
    NumberFeature,
    sha256_file,
)
from runtimes.training.anomaly import AnomalyForest
from runtimes.training.build import build_all, onnx_inputs, train
from runtimes.training.datasets import generate, sample_requests
from runtimes.training.specs import MODEL_SPECS

SERVED = ("card-fraud-v1", "card-fraud-v2", "churn-v1", "credit-risk-v1", "trade-anomaly-v1")


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_two_builds_give_identical_bytes(model_dir: Path, tmp_path: Path) -> None:
    started = time.perf_counter()
    build_all(tmp_path)
    elapsed = time.perf_counter() - started
    print(f"\nbuild_all: {elapsed:.2f} s")
    first, second = _digests(model_dir), _digests(tmp_path)
    assert sorted(first) == sorted(
        f"{m}/{v}/{f}"
        for m, v in [
            ("card-fraud", "1"),
            ("card-fraud", "2"),
            ("churn", "1"),
            ("credit-risk", "1"),
            ("trade-anomaly", "1"),
        ]
        for f in ("manifest.json", "model.onnx", "reasons.json")
    )
    assert first == second


def test_every_model_version_is_built(manifests: dict[str, Manifest]) -> None:
    assert sorted(manifests) == sorted(SERVED)


@pytest.mark.parametrize("served", SERVED)
def test_manifest_describes_artifact_training_and_baselines(
    served: str, manifests: dict[str, Manifest], model_dir: Path
) -> None:
    m = manifests[served]
    folder = model_dir / m.name / m.version
    assert sha256_file(folder / ARTIFACT_FILE) == m.artifact_sha256
    assert m.description and m.features
    assert all(f.description for f in m.features)
    # Optional features say how their absence reaches the model (the manifest refuses otherwise).
    assert all(f.required == (f.absent is None) for f in m.features)
    t = m.training
    print(f"\n{served}: held-out AUC {t.heldout_auc:.4f} ({t.algorithm})")
    assert 0.75 < t.heldout_auc < 0.99
    assert t.rows > 10_000 and t.heldout_rows > 2_000
    assert len(t.data_fingerprint) == 64
    assert {"scikit-learn", "skl2onnx", "onnx", "numpy"} <= set(t.libraries)

    assert set(m.baselines) == {f.name for f in m.features} | {"score"}
    for f in m.features:
        h = m.baselines[f.name]
        assert sum(h.counts) + h.missing == t.rows, f.name
        # Only features declared "absent: missing" were absent in training (as NaN).
        assert (h.missing > 0) == (f.absent == "missing"), f.name
        if isinstance(f, NumberFeature):
            assert len(h.edges) == len(h.counts) + 1 and 2 <= len(h.counts) <= 10
            assert h.edges[0] == f.min and h.edges[-1] == f.max
            assert list(h.edges) == sorted(h.edges)
        elif isinstance(f, CategoryFeature):
            assert h.categories == f.categories
            assert all(c > 0 for c in h.counts)
        else:
            assert isinstance(f, BooleanFeature)
            assert h.categories == ("false", "true")
    score = m.baselines["score"]
    assert (score.edges[0], score.edges[-1]) == (0.0, 1.0) and sum(score.counts) == t.rows


def test_fraud_versions_share_the_schema_but_score_differently(
    manifests: dict[str, Manifest], model_dir: Path
) -> None:
    v1, v2 = manifests["card-fraud-v1"], manifests["card-fraud-v2"]
    assert v1.features == v2.features
    assert v1.feature_schema_version == v2.feature_schema_version
    assert v1.training.data_fingerprint == v2.training.data_fingerprint
    rows = pd.DataFrame(sample_requests("card-fraud", 200, seed=7))
    scores = []
    for m in (v1, v2):
        session = ort.InferenceSession(str(model_dir / m.name / m.version / ARTIFACT_FILE))
        _, probabilities = session.run(None, onnx_inputs(m.features, rows))
        scores.append(probabilities[:, 1])
    assert not np.allclose(scores[0], scores[1], atol=1e-3)
    # Different models of the same risk: they should still broadly agree.
    assert np.corrcoef(scores[0], scores[1])[0, 1] > 0.7


@pytest.mark.parametrize(("model", "low", "high"), [("card-fraud", 0.02, 0.04)])
def test_fraud_rate_is_realistic(model: str, low: float, high: float) -> None:
    assert low < generate(model, 30_000, seed=1).labels.mean() < high


def test_the_anomaly_forest_serves_sklearns_anomaly_score(
    manifests: dict[str, Manifest], model_dir: Path
) -> None:
    """trade-anomaly's probability of class 1 is s(x) = -score_samples(x) of the trained
    IsolationForest, its label s >= sklearn's own cut, on rows the model never saw."""
    m = manifests["trade-anomaly-v1"]
    (spec,) = [s for s in MODEL_SPECS if s.name == m.name]
    trained = train(spec)
    forest = trained.pipeline.steps[-1][1]
    assert isinstance(forest, AnomalyForest)
    rows = trained.heldout
    expected = -trained.pipeline.score_samples(rows)
    session = ort.InferenceSession(str(model_dir / m.name / m.version / ARTIFACT_FILE))
    labels, probabilities = session.run(None, onnx_inputs(m.features, rows))
    s = np.asarray(probabilities, dtype=np.float64)
    worst = float(np.max(np.abs(s[:, 1] - expected)))
    print(f"\ntrade-anomaly: max |s(onnx) - s(sklearn)| {worst:.2e} on {len(rows)} rows")
    assert worst <= 1e-6
    np.testing.assert_allclose(s[:, 0] + s[:, 1], 1.0, atol=1e-6)
    threshold = np.float32(forest.threshold)
    decided = np.abs(expected - threshold) > 1e-6
    assert np.array_equal(labels[decided], (expected[decided] >= threshold).astype(np.int64))
    # The planted anomalies are what it flags: most flags are planted, and most planted flagged.
    flagged = labels == 1
    assert trained.y_heldout[flagged].mean() > 0.4
    assert flagged[trained.y_heldout == 1].mean() > 0.4


@pytest.mark.parametrize("served", SERVED)
def test_sample_requests_are_valid_and_reproducible(
    served: str, manifests: dict[str, Manifest]
) -> None:
    m = manifests[served]
    rows = sample_requests(m.name, 50, seed=3)
    assert rows == sample_requests(m.name, 50, seed=3)
    assert rows != sample_requests(m.name, 50, seed=4)
    for row in rows:
        assert set(row) == {f.name for f in m.features}
        for f in m.features:
            value = row[f.name]
            if isinstance(f, NumberFeature):
                assert isinstance(value, float) and f.min <= value <= f.max
            elif isinstance(f, CategoryFeature):
                assert value in f.categories
            else:
                assert isinstance(value, bool)


def test_cli_verify_accepts_the_repository(
    model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert models_main(["verify", "--model-dir", str(model_dir)]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in SERVED)


def test_cli_verify_names_a_tampered_artifact(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = tmp_path / "repo"
    _copy_tree(model_dir, repo)
    artifact = repo / "credit-risk" / "1" / ARTIFACT_FILE
    _flip_byte(artifact)
    assert models_main(["verify", "--model-dir", str(repo)]) == 1
    err = capsys.readouterr().err
    assert str(artifact) in err and "credit-risk-v1" in err and "does not match" in err


def test_cli_build_prints_one_line_per_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert models_main(["build", "--out", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split("\t")[:2] for line in lines] == [
        ["card-fraud", "v1"],
        ["card-fraud", "v2"],
        ["credit-risk", "v1"],
        ["churn", "v1"],
        ["trade-anomaly", "v1"],
    ]
    assert all("sha256=" in line and "heldout_auc=0." in line for line in lines)


def _copy_tree(src: Path, dst: Path) -> None:
    for p in src.rglob("*"):
        if p.is_file():
            target = dst / p.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(p.read_bytes())


def _flip_byte(path: Path, offset: int = 200) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_builds_in_other_processes_give_the_same_bytes(model_dir: Path, tmp_path: Path) -> None:
    """A rebuild elsewhere must give the same artifact sha256s: Python's string hashing differs
    per process (PYTHONHASHSEED), and orders anything built from a set. Before the opsets were
    sorted, seeds 1 and 4 listed skl2onnx's opsets in opposite orders, changing two artifacts:
    whatever seed built ``model_dir``, one of them differed."""
    import os
    import subprocess
    import sys

    for seed in ("1", "4"):
        out = tmp_path / f"seed-{seed}"
        subprocess.run(
            [sys.executable, "-m", "gateway.cli", "models", "build", "--out", str(out)],
            check=True,
            capture_output=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
            timeout=300,
        )
        assert _digests(out) == _digests(model_dir), f"PYTHONHASHSEED={seed}"
