"""Counting decisions into monitoring windows as they arrive, so drift is never a scan.

Each decision adds one to a few counters, keyed by what a risk team compares: the decision
point, the model version and the arm that answered, and the hour it was decided in. Per key, a
counter per measure and slot:

- a number feature, and the score: the bin of the version's baseline histogram the value falls
  in (``"0"`` .. ``"n-1"``; a value beyond the outer edges in the outer bin, and counted again
  under ``OUT_OF_RANGE``), or ``MISSING``;
- a category or boolean feature: its value (``"true"``/``"false"`` for a boolean), ``UNKNOWN``
  for a value the baseline lacks, or ``MISSING``;
- ``DECISION``: the decision (the approve/review/decline mix);
- ``SCORE_SHARED``: the score in ``SHARED_SCORE_BINS`` equal bins of [0, 1], the same for every
  version, so that two arms (champion and challenger) can be compared with each other; each
  version's own baseline bins compare it with its training only.

- ``SHADOW_PAIR`` (a shadow arm's counters only): its pairs with the decision it shadowed, by
  the parent's model and version and whether the two decided the same (``pair_slot``), in the
  hour the parent was decided (counted by ``governance.store.shadow_pairs`` when the second
  half of a pair is stored).

An hour's counters are the sum of its decisions', a day's the sum of its hours': any window of
whole hours is a sum of rows (``governance.monitoring.measures`` computes on those sums).
Fallback decisions are left out: a rules file's score has no baseline of its own.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from lineage.v1.record import DecisionRecord
from runtimes.manifest import Histogram, Manifest

HOUR_US = 3_600_000_000
"""The window counters are kept in: the finest a report can ask for."""
SCORE = "score"
"""The measure of the model's score (the manifest's ``score`` baseline)."""
SCORE_SHARED = "(score, shared bins)"
"""The measure of the score in bins every version shares (arm against arm)."""
SHARED_SCORE_BINS = 20
DECISION = "(decision)"
"""The measure of the decision mix; parenthesised, so no feature can be called that."""
SHADOW_PAIR = "(shadow pair)"
"""The measure of a shadow's pairs with the decisions it shadowed."""
SHADOW = "shadow"
MISSING = "(missing)"
OUT_OF_RANGE = "(out of range)"
UNKNOWN = "(unknown)"


@dataclass(frozen=True, slots=True, order=True)
class WindowKey:
    decision_point: str
    model_name: str
    model_version: str
    arm: str
    hour_us: int
    """Start of the hour (UTC microseconds since the epoch) the decisions were decided in."""


Counts = Counter[tuple[WindowKey, str, str]]
"""(window, measure, slot) -> decisions."""


def pair_slot(parent_model: str, parent_version: str, *, same: bool) -> str:
    """A ``SHADOW_PAIR`` slot: a JSON list, so that no model name or version can break it."""
    return json.dumps([parent_model, parent_version, "same" if same else "differ"])


def parse_pair_slot(slot: str) -> tuple[str, str, bool]:
    """(parent model, parent version, same decision) of a ``pair_slot``."""
    model, version, outcome = json.loads(slot)
    return str(model), str(version), outcome == "same"


def hour_of(at_us: int) -> int:
    return at_us - at_us % HOUR_US


def shared_score_bin(score: float) -> str:
    """The bin of ``SHARED_SCORE_BINS`` equal bins of [0, 1] a score falls in (1.0 in the last)."""
    return str(min(SHARED_SCORE_BINS - 1, max(0, int(score * SHARED_SCORE_BINS))))


def _slot(value: object, histogram: Histogram) -> list[str]:
    if value is None or (isinstance(value, float) and value != value):
        return [MISSING]
    if histogram.edges:
        x = float(value)  # type: ignore[arg-type]
        edges = histogram.edges
        # The bin holding x: [edge i, edge i+1), the last bin closed; outer values clipped.
        low, high = 0, len(edges) - 2
        while low < high:
            middle = (low + high + 1) // 2
            if x >= edges[middle]:
                low = middle
            else:
                high = middle - 1
        slots = [str(low)]
        if x < edges[0] or x > edges[-1]:
            slots.append(OUT_OF_RANGE)
        return slots
    text = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return [text if text in histogram.categories else UNKNOWN]


def count(
    records: Iterable[DecisionRecord], manifests: Mapping[tuple[str, str], Manifest]
) -> Counts:
    """The counters ``records`` add; a record whose version's manifest is unknown (or that a
    fallback answered) adds none."""
    counts: Counts = Counter()
    for r in records:
        if r.fallback_reason:
            continue
        manifest = manifests.get((r.model_name, r.model_version))
        if manifest is None:
            continue
        key = WindowKey(
            r.decision_point, r.model_name, r.model_version, r.arm, hour_of(r.decided_at_us)
        )
        counts[(key, DECISION, r.decision)] += 1
        counts[(key, SCORE_SHARED, shared_score_bin(r.score))] += 1
        baselines = manifest.baselines
        if SCORE in baselines:
            for slot in _slot(r.score, baselines[SCORE]):
                counts[(key, SCORE, slot)] += 1
        for feature in manifest.features:
            histogram = baselines.get(feature.name)
            if histogram is not None:
                for slot in _slot(r.features.get(feature.name), histogram):
                    counts[(key, feature.name, slot)] += 1
    return counts


def baseline_slots(histogram: Histogram) -> tuple[list[str], list[int]]:
    """A baseline's slots and training counts, in the order PSI compares them."""
    if histogram.edges:
        return [str(i) for i in range(len(histogram.counts))], list(histogram.counts)
    return list(histogram.categories), list(histogram.counts)
