"""The monitoring measures against independent implementations (numpy's histogram, scipy,
scikit-learn), on data whose drift is known."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from scipy.spatial import distance
from sklearn.metrics import roc_auc_score

from governance.monitoring import measures


def _reference_psi(expected: np.ndarray, actual: np.ndarray) -> float:
    e = np.clip(expected / expected.sum(), measures.PSI_FLOOR, None)
    a = np.clip(actual / actual.sum(), measures.PSI_FLOOR, None)
    return float(sum((ai - ei) * math.log(ai / ei) for ai, ei in zip(a, e, strict=True)))


def test_binning_matches_numpys_histogram_and_counts_what_falls_outside() -> None:
    rng = np.random.default_rng(1)
    train = rng.normal(0, 1, 20_000)
    counts, edges = np.histogram(train, bins=10)
    window = rng.normal(0.3, 1.2, 5_000)
    inside = window[(window >= edges[0]) & (window <= edges[-1])]
    binned = measures.bin_numbers([*window.tolist(), None, math.nan], edges.tolist())
    reference, _ = np.histogram(np.clip(window, edges[0], edges[-1]), bins=edges)
    assert binned.counts == tuple(int(c) for c in reference)
    assert binned.out_of_range == window.size - inside.size > 0
    assert binned.missing == 2
    assert measures.bin_numbers(train.tolist(), edges.tolist()).counts == tuple(counts)


def test_psi_is_near_zero_without_drift_and_past_the_rule_with_it() -> None:
    rng = np.random.default_rng(2)
    counts, edges = np.histogram(rng.normal(0, 1, 50_000), bins=10)
    same = measures.bin_numbers(rng.normal(0, 1, 5_000).tolist(), edges.tolist())
    shifted = measures.bin_numbers(rng.normal(1.0, 1, 5_000).tolist(), edges.tolist())
    stable = measures.psi(counts, same.counts)
    moved = measures.psi(counts, shifted.counts)
    assert stable < 0.1 and measures.psi_band(stable) == "stable"
    assert moved > 0.25 and measures.psi_band(moved) == "significant"
    for value, window in ((stable, same), (moved, shifted)):
        expected = _reference_psi(counts.astype(float), np.asarray(window.counts, float))
        assert value == pytest.approx(expected, rel=1e-12)
    assert math.isnan(measures.psi(counts, [0] * 10))
    assert measures.psi_band(0.15) == "moderate"
    with pytest.raises(ValueError, match="bins"):
        measures.psi(counts, [1, 2])


def test_category_measures_match_scipy() -> None:
    categories = ("grocery", "travel", "online", "atm")
    baseline = np.array([500, 200, 250, 50])
    window = measures.count_categories(
        ["grocery"] * 40 + ["travel"] * 30 + ["online"] * 25 + ["atm"] * 5 + ["new", None],
        categories,
    )
    assert window.counts == (40, 30, 25, 5)
    assert (window.unknown, window.missing) == (1, 1)
    chi = measures.chi_square(baseline, window.counts)
    wanted = baseline / baseline.sum() * sum(window.counts)
    reference = stats.chisquare(window.counts, wanted)
    assert chi.statistic == pytest.approx(reference.statistic, rel=1e-12)
    assert chi.p_value == pytest.approx(reference.pvalue, rel=1e-9)
    assert chi.dof == 3
    js = measures.jensen_shannon(baseline, window.counts)
    assert js == pytest.approx(distance.jensenshannon(baseline, window.counts, base=2), rel=1e-9)
    assert measures.jensen_shannon(baseline, baseline * 3) == pytest.approx(0.0, abs=1e-12)


def test_auc_and_ks_match_scikit_learn_and_scipy_with_ties() -> None:
    rng = np.random.default_rng(3)
    bad = rng.random(4_000) < 0.1
    # Rounded to two decimals: many ties, which both must count alike.
    scores = np.round(np.clip(rng.normal(0.3, 0.15, 4_000) + 0.2 * bad, 0, 1), 2)
    assert measures.auc(scores, bad) == pytest.approx(roc_auc_score(bad, scores), rel=1e-12)
    reference = stats.ks_2samp(scores[bad], scores[~bad]).statistic
    assert measures.ks(scores, bad) == pytest.approx(reference, rel=1e-12)
    assert math.isnan(measures.auc(scores, np.zeros(4_000, dtype=bool)))
    assert math.isnan(measures.ks(scores, np.ones(4_000, dtype=bool)))
