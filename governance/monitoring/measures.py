"""The drift and performance measures model-risk teams read, on counts rather than rows.

Every measure here is computed from per-bin counts (a number's bins fixed by its manifest's
baseline histogram, a category's values), so that windows can be counted once at ingest and
merged afterwards: the counts of a day are the sum of its hours', and no query scans history.

- PSI, the population stability index, over the baseline's bins: sum of (a - e) * ln(a / e)
  over shares. The bank rule of thumb: below 0.1 stable, 0.1 to 0.25 a moderate shift, above
  0.25 a significant one. An empty bin on either side would make it infinite, so every share is
  floored at ``PSI_FLOOR`` (the convention of most credit-risk tooling).
- For categories also Pearson's chi-square test of the window's counts against the baseline's
  shares, and the Jensen-Shannon distance (base 2: 0 same, 1 disjoint).
- Performance from outcomes: AUC (the Mann-Whitney statistic, ties counted half), the KS
  statistic (the largest gap between the score distributions of bad and good outcomes), both
  exact from the (score, outcome) pairs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

PSI_FLOOR = 1e-4
"""Smallest share a bin counts as (so that an empty bin gives a large, finite PSI)."""
PSI_MODERATE = 0.1
PSI_SIGNIFICANT = 0.25


def shares(counts: Sequence[float]) -> np.ndarray:
    """Counts as shares of their total, each floored at ``PSI_FLOOR``; all zero gives zeros."""
    values = np.asarray(counts, dtype=np.float64)
    total = values.sum()
    if total <= 0:
        return np.zeros_like(values)
    floored: np.ndarray = np.maximum(values / total, PSI_FLOOR)
    return floored


def psi(expected: Sequence[float], actual: Sequence[float]) -> float:
    """The population stability index of ``actual`` counts against ``expected`` counts, bin by
    bin (the same bins on both sides); NaN when either side is empty."""
    if len(expected) != len(actual):
        raise ValueError(f"{len(expected)} expected bins against {len(actual)} actual ones")
    e, a = shares(expected), shares(actual)
    if not e.any() or not a.any():
        return math.nan
    return float(np.sum((a - e) * np.log(a / e)))


def psi_band(value: float) -> str:
    """``stable``, ``moderate`` or ``significant`` by the 0.1 / 0.25 rule; ``unknown`` for NaN."""
    if math.isnan(value):
        return "unknown"
    if value > PSI_SIGNIFICANT:
        return "significant"
    return "moderate" if value >= PSI_MODERATE else "stable"


@dataclass(frozen=True, slots=True)
class BinnedCounts:
    """A window's values of one number feature, counted into its baseline's bins."""

    counts: tuple[int, ...]
    """Per bin; a value beyond the outer edges counts in the outer bin (as PSI tools do) and
    is also counted in ``out_of_range``."""
    out_of_range: int
    missing: int


def bin_numbers(values: Sequence[float | None], edges: Sequence[float]) -> BinnedCounts:
    """Counts ``values`` (None or NaN: missing) into the bins between ``edges``; a bin holds
    [edge i, edge i+1), the last also its upper edge."""
    if len(edges) < 2:
        raise ValueError("a histogram needs at least two edges")
    present = np.asarray(
        [v for v in values if v is not None and not math.isnan(v)], dtype=np.float64
    )
    missing = len(values) - present.size
    inner = np.asarray(edges[1:-1], dtype=np.float64)
    index = np.searchsorted(inner, present, side="right")
    counts = np.bincount(index, minlength=len(edges) - 1)
    outside = int(np.count_nonzero((present < edges[0]) | (present > edges[-1])))
    return BinnedCounts(tuple(int(c) for c in counts), outside, missing)


@dataclass(frozen=True, slots=True)
class CategoryCounts:
    """A window's values of one category feature, counted by the baseline's categories."""

    counts: tuple[int, ...]
    """In the baseline's category order."""
    unknown: int
    """Values the baseline does not have (refused by validation today; kept for schemas that
    grow)."""
    missing: int


def count_categories(values: Sequence[str | None], categories: Sequence[str]) -> CategoryCounts:
    position = {c: i for i, c in enumerate(categories)}
    counts = [0] * len(categories)
    unknown = missing = 0
    for v in values:
        if v is None or v == "":
            missing += 1
        elif v in position:
            counts[position[v]] += 1
        else:
            unknown += 1
    return CategoryCounts(tuple(counts), unknown, missing)


@dataclass(frozen=True, slots=True)
class ChiSquare:
    statistic: float
    p_value: float
    dof: int


def chi_square(expected: Sequence[float], actual: Sequence[int]) -> ChiSquare:
    """Pearson's test of ``actual`` counts against the shares of ``expected`` counts; the
    categories the baseline never saw are left out (their expected count is 0)."""
    e = np.asarray(expected, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    keep = e > 0
    e, a = e[keep], a[keep]
    n = a.sum()
    if n <= 0 or e.size < 2:
        return ChiSquare(math.nan, math.nan, 0)
    wanted = e / e.sum() * n
    statistic = float(np.sum((a - wanted) ** 2 / wanted))
    dof = int(e.size - 1)
    return ChiSquare(statistic, float(stats.chi2.sf(statistic, dof)), dof)


def jensen_shannon(expected: Sequence[float], actual: Sequence[float]) -> float:
    """The Jensen-Shannon distance (base 2) between the two count vectors' distributions."""
    p = np.asarray(expected, dtype=np.float64)
    q = np.asarray(actual, dtype=np.float64)
    if p.sum() <= 0 or q.sum() <= 0:
        return math.nan
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(x: np.ndarray) -> float:
        nonzero = x > 0
        return float(np.sum(x[nonzero] * np.log2(x[nonzero] / m[nonzero])))

    return math.sqrt(max(0.0, (kl(p) + kl(q)) / 2))


def auc(scores: Sequence[float], bad: Sequence[bool]) -> float:
    """The probability that a bad outcome's score is above a good one's (ties half); NaN
    without both kinds of outcome."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(bad, dtype=bool)
    n_bad, n_good = int(y.sum()), int((~y).sum())
    if n_bad == 0 or n_good == 0:
        return math.nan
    ranks = stats.rankdata(s)
    return float((ranks[y].sum() - n_bad * (n_bad + 1) / 2) / (n_bad * n_good))


def ks(scores: Sequence[float], bad: Sequence[bool]) -> float:
    """The Kolmogorov-Smirnov statistic between the scores of bad and good outcomes."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(bad, dtype=bool)
    if not y.any() or y.all():
        return math.nan
    bads, goods = np.sort(s[y]), np.sort(s[~y])
    at = np.concatenate([bads, goods])
    gap = np.abs(
        np.searchsorted(bads, at, side="right") / bads.size
        - np.searchsorted(goods, at, side="right") / goods.size
    )
    return float(gap.max())
