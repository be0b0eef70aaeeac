"""Exact path-dependent TreeSHAP (Lundberg et al. 2018, Algorithm 2), vectorised over rows.

For one leaf, Algorithm 2 gives each unique column ``i`` on the leaf's path the share

    phi_i = v * (o_i - z_i) * sum over S of |S|! (d - |S| - 1)! / d! * prod_{j in S} o_j
                                                          * prod_{j not in S, j != i} z_j

(S the subsets of the path's other d - 1 unique columns, v the leaf weight, z_j the product of
the training-cover fractions of the path's edges on column j, o_j = 1 if the row satisfies every
condition the path puts on column j, else 0). Because every o_j is 0 or 1, a leaf's shares
depend only on which of its d columns the row satisfies: 2**d patterns. ``TreeShap`` computes
every leaf's shares for every pattern once, when the model is loaded, summed per group of
columns (the manifest feature each column comes from: SHAP values are additive over columns),
into a table of (sum over leaves of 2**d) rows of one float per group. Explaining a batch is then
comparisons, one pattern index per leaf and row, a gather of table rows and their sum. A
column's conditions along a path are one interval of float32 values (the graph compares float32
columns with float32 thresholds), and a missing value (NaN) satisfies them if the path follows
the missing-value track at each. An ensemble whose table would exceed MAX_TABLE_BYTES (paths
with many distinct columns) is refused.

The leaves' rows are summed in a fixed order of additions that does not depend on the batch, so
a row's contributions are the same bits alone and among other rows.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from math import factorial

import numpy as np

from runtimes.explain.errors import UnexplainableModel
from runtimes.explain.trees import LEAF, Tree, TreeEnsemble

# Bytes of gathered shares per pass over the rows (the largest array of a pass).
CHUNK_BYTES = 4 << 20
MAX_CHUNK_ROWS = 256
MAX_TABLE_BYTES = 256 << 20
_INF = np.float32(np.inf)


@dataclass
class _Paths:
    """Every leaf path of the ensemble, one entry per (leaf, unique column on its path)."""

    leaf_value: list[float]
    leaf_depth: list[int]
    column: list[int]
    low: list[np.float32]
    high: list[np.float32]
    nan_ok: list[bool]
    zero_fraction: list[float]
    expected: float = 0.0
    """Sum over leaves of v * prod z: the ensemble's cover-weighted mean margin, base excluded."""


def _branch_intervals(mode: str, t: np.float32) -> tuple[tuple[np.float32, np.float32], ...]:
    """The inclusive float32 intervals the true and the false branch of a comparison admit."""
    below, above = np.nextafter(t, -_INF), np.nextafter(t, _INF)
    if mode == "BRANCH_LEQ":
        return (-_INF, t), (above, _INF)
    if mode == "BRANCH_LT":
        return (-_INF, below), (t, _INF)
    if mode == "BRANCH_GTE":
        return (t, _INF), (-_INF, below)
    return (above, _INF), (-_INF, t)  # BRANCH_GT


@dataclass(frozen=True)
class _Condition:
    """What a path asks of one column: an inclusive float32 interval, whether a missing value
    follows the path, and the product of the cover fractions of the path's edges on it."""

    low: np.float32
    high: np.float32
    nan_ok: bool
    zero_fraction: float

    def narrowed(self, other: _Condition) -> _Condition:
        return _Condition(
            max(self.low, other.low),
            min(self.high, other.high),
            self.nan_ok and other.nan_ok,
            self.zero_fraction * other.zero_fraction,
        )


def _collect_paths(trees: tuple[Tree, ...]) -> _Paths:
    paths = _Paths([], [], [], [], [], [], [])
    for tree in trees:
        # The conditions of the path to each node, by column in first-seen order.
        stack: list[tuple[int, dict[int, _Condition]]] = [(tree.root, {})]
        while stack:
            i, conditions = stack.pop()
            if tree.mode[i] == LEAF:
                value = float(tree.value[i])
                fraction = 1.0
                for column, condition in conditions.items():
                    paths.column.append(column)
                    paths.low.append(condition.low)
                    paths.high.append(condition.high)
                    paths.nan_ok.append(condition.nan_ok)
                    paths.zero_fraction.append(condition.zero_fraction)
                    fraction *= condition.zero_fraction
                paths.leaf_value.append(value)
                paths.leaf_depth.append(len(conditions))
                paths.expected += value * fraction
                continue
            column = int(tree.column[i])
            intervals = _branch_intervals(tree.mode[i], tree.threshold[i])
            children = (int(tree.true_child[i]), int(tree.false_child[i]))
            for taken, ((low, high), child) in enumerate(zip(intervals, children, strict=True)):
                edge = _Condition(
                    low,
                    high,
                    nan_ok=bool(tree.missing_true[i]) == (taken == 0),
                    zero_fraction=float(tree.cover[child] / tree.cover[i]),
                )
                inner = dict(conditions)
                inner[column] = inner[column].narrowed(edge) if column in inner else edge
                stack.append((child, inner))
    return paths


def leaf_shares(value: np.ndarray, zero: np.ndarray) -> np.ndarray:
    """[L, 2**d, d]: the shares of L leaves with d unique path columns each, for every pattern
    (bit j of the pattern index set when the row satisfies column j's conditions); ``value`` [L]
    the leaf weights, ``zero`` [L, d] the zero fractions."""
    leaves, d = zero.shape
    patterns = np.arange(2**d)
    ones = ((patterns[:, None] >> np.arange(d)[None, :]) & 1).astype(np.float64)
    weights = np.array([factorial(s) * factorial(d - 1 - s) / factorial(d) for s in range(d)])
    shares = np.empty((leaves, 2**d, d), dtype=np.float64)
    for i in range(d):
        # Coefficients in t of prod_{j != i} (z_j + o_j t): coefficient s sums the products
        # with s satisfied columns in S.
        poly = np.zeros((leaves, 2**d, d), dtype=np.float64)
        poly[:, :, 0] = 1.0
        for j in range(d):
            if j == i:
                continue
            shifted = poly[:, :, :-1] * ones[None, :, j, None]
            poly *= zero[:, None, j, None]
            poly[:, :, 1:] += shifted
        shares[:, :, i] = value[:, None] * (ones[None, :, i] - zero[:, None, i]) * (poly @ weights)
    return shares


class TreeShap:
    """Path-dependent TreeSHAP of a tree ensemble's raw margin, per group of input columns.

    ``groups[c]`` is the group (manifest feature) of input column c. ``values(columns)`` gives
    [N, n_groups] float64 contributions whose sum over groups plus ``base_value`` is each row's
    raw margin: ``scale`` times the ensemble's score before its post-transform (SHAP values are
    linear in the leaf weights, so the table is scaled once, at load).

    At load, each leaf's shares for each of its 2**d patterns are summed per group into one row
    of ``table`` ([sum over leaves of 2**d, n_groups]). Leaves are ordered by path length, longest
    first, and the path conditions slot by slot, so slot s of every leaf that has one is one
    contiguous run: a row's pattern per leaf is d shifted additions of comparison results.
    """

    def __init__(
        self, ensemble: TreeEnsemble, groups: np.ndarray, n_groups: int, scale: float = 1.0
    ) -> None:
        paths = _collect_paths(ensemble.trees)
        self.n_groups = n_groups
        self.base_value = scale * (float(ensemble.base_value) + paths.expected)
        depth = np.asarray(paths.leaf_depth, dtype=np.int64)
        value = np.asarray(paths.leaf_value, dtype=np.float64)
        column = np.asarray(paths.column, dtype=np.int64)
        zero = np.asarray(paths.zero_fraction, dtype=np.float64)
        starts = np.concatenate(([0], np.cumsum(depth)[:-1])).astype(np.int64)
        # Leaves on a path of no condition (a one-leaf tree) are all base value.
        leaves = np.flatnonzero(depth > 0)
        leaves = leaves[np.argsort(-depth[leaves], kind="stable")]
        depth_of = depth[leaves]
        self.n_leaves = int(depth.size)
        self.slot_table_size = int((2**depth_of * depth_of).sum())
        """Floats of the per-slot shares (sum over leaves of 2**d * d) the table is summed from."""

        table_bytes = int((2**depth_of).sum()) * n_groups * 8
        if table_bytes > MAX_TABLE_BYTES:
            raise UnexplainableModel(
                f"{ensemble.node_name!r}: paths with up to {int(depth_of.max())} distinct "
                f"columns need a {table_bytes >> 20} MiB table (limit {MAX_TABLE_BYTES >> 20} MiB)"
            )
        offsets = np.concatenate(([0], np.cumsum(2**depth_of)[:-1])).astype(np.int64)
        table = np.zeros((int((2**depth_of).sum()), n_groups), dtype=np.float64)
        for d in np.unique(depth_of):
            same = np.flatnonzero(depth_of == d)
            entries = starts[leaves[same], None] + np.arange(d)[None, :]
            shares = leaf_shares(value[leaves[same]], zero[entries])  # [L, 2**d, d]
            rows = offsets[same, None] + np.arange(2**d)[None, :]
            entry_groups = groups[column[entries]]  # [L, d]
            for slot in range(d):
                # One leaf's slots may share a group: add, never assign.
                np.add.at(table, (rows, entry_groups[:, slot, None]), shares[:, :, slot])
        if scale != 1.0:
            table *= scale
        self.table = table
        self._offsets = offsets.astype(np.int32)[:, None]
        per_row = max(1, leaves.size * n_groups * table.itemsize)
        self._chunk_rows = max(1, min(MAX_CHUNK_ROWS, CHUNK_BYTES // per_row))
        self._local = threading.local()

        # Slot-major entries: slot s of the first ``slot_leaves[s]`` leaves.
        max_depth = int(depth_of[0]) if depth_of.size else 0
        self._slot_leaves = [int((depth_of > s).sum()) for s in range(max_depth)]
        order = [starts[leaves[:n]] + s for s, n in enumerate(self._slot_leaves)]
        entry = np.concatenate(order) if order else np.zeros(0, dtype=np.int64)
        self.n_entries = int(entry.size)
        # Per entry, as [E, 1] columns against [E, rows] values.
        self._column = column[entry]
        self._low = np.asarray(paths.low, dtype=np.float32)[entry, None]
        self._high = np.asarray(paths.high, dtype=np.float32)[entry, None]
        self._nan_ok = np.asarray(paths.nan_ok, dtype=bool)[entry, None]
        self._any_nan_ok = bool(self._nan_ok.any())
        self._bit = np.concatenate(
            [np.full(n, 1 << s, dtype=np.int32) for s, n in enumerate(self._slot_leaves)]
        )[:, None]

    def values(self, columns: np.ndarray) -> np.ndarray:
        """[N, n_groups] contributions of the rows of ``columns`` ([N, C] float32, the
        ensemble's input)."""
        columns = np.asarray(columns, dtype=np.float32)
        rows = columns.shape[0]
        out = np.zeros((rows, self.n_groups), dtype=np.float64)
        if self.n_entries == 0:
            return out
        space = self._workspace()
        step = self._chunk_rows
        for start in range(0, rows, step):
            part = np.ascontiguousarray(columns[start : start + step].T)
            out[start : start + part.shape[1]] = self._chunk(part, space)
        return out

    def _workspace(self) -> _Workspace:
        space: _Workspace | None = getattr(self._local, "space", None)
        if space is None:
            space = _Workspace(self.n_entries, self._offsets.size, self.n_groups, self._chunk_rows)
            self._local.space = space
        return space

    def _chunk(self, columns: np.ndarray, space: _Workspace) -> np.ndarray:
        """[n, groups] for ``columns`` [C, n]: rows are the inner axis, so every step works on
        contiguous runs of an entry's or a leaf's rows."""
        n = columns.shape[1]
        x, satisfied, scratch, bits, pattern, shares = space.views(n)
        np.take(columns, self._column, axis=0, out=x, mode="clip")
        np.greater_equal(x, self._low, out=satisfied)
        np.less_equal(x, self._high, out=scratch)
        satisfied &= scratch
        if self._any_nan_ok and np.isnan(columns).any():
            np.isnan(x, out=scratch)
            scratch &= self._nan_ok
            satisfied |= scratch
        np.multiply(satisfied, self._bit, out=bits)
        pattern[:] = self._offsets
        at = 0
        for count in self._slot_leaves:
            pattern[:count] += bits[at : at + count]
            at += count
        np.take(self.table, pattern, axis=0, out=shares, mode="clip")
        return _sum_leaves(shares)


class _Workspace:
    """One thread's arrays for a pass over up to ``rows`` rows, reused by every call: fresh
    arrays of this size cost more in page faults than the work done in them."""

    def __init__(self, entries: int, leaves: int, groups: int, rows: int) -> None:
        self._sizes = (entries, leaves, groups)
        self._x = np.empty(entries * rows, dtype=np.float32)
        self._satisfied = np.empty(entries * rows, dtype=bool)
        self._scratch = np.empty(entries * rows, dtype=bool)
        self._bits = np.empty(entries * rows, dtype=np.int32)
        self._pattern = np.empty(leaves * rows, dtype=np.int32)
        self._shares = np.empty(leaves * rows * groups, dtype=np.float64)

    def views(self, n: int) -> tuple[np.ndarray, ...]:
        """Contiguous [entries, n], [leaves, n] and [leaves, n, groups] views."""
        entries, leaves, groups = self._sizes
        return (
            self._x[: entries * n].reshape(entries, n),
            self._satisfied[: entries * n].reshape(entries, n),
            self._scratch[: entries * n].reshape(entries, n),
            self._bits[: entries * n].reshape(entries, n),
            self._pattern[: leaves * n].reshape(leaves, n),
            self._shares[: leaves * n * groups].reshape(leaves, n, groups),
        )


def _sum_leaves(shares: np.ndarray) -> np.ndarray:
    """Sums [L, n, groups] over its leaves, in place, by halving: a fixed order of additions
    whatever n, so a row's sum is the same bits alone and in any batch."""
    size = shares.shape[0]
    while size > 1:
        half = size // 2
        shares[:half] += shares[half : 2 * half]
        if size % 2:
            shares[0] += shares[size - 1]
        size = half
    return np.array(shares[0])
