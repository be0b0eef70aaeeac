"""Performance decay from recorded outcomes: how well each version's scores still rank the
outcomes that later turned out bad, per window.

An outcome's label is bad when it is one of the labels the question names (``confirmed_fraud``,
``default``...): labels are free text, recorded by case management or collections, and only the
asker knows which mean the adverse outcome. The latest outcome of a decision counts. Per model
version and arm: AUC and KS (``measures``), and the bad rate in score bands of equal width. With
fewer than ``MIN_LABELLED`` labelled decisions, or fewer than ``MIN_EACH`` of either kind, the
figures are still given but ``enough`` is False: they say little yet.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

from governance.monitoring import measures

MIN_LABELLED = 200
MIN_EACH = 20
BANDS = 10


@dataclass(frozen=True, slots=True)
class Labelled:
    """A decided score and its latest outcome."""

    model_name: str
    model_version: str
    arm: str
    score: float
    label: str


@dataclass(frozen=True, slots=True)
class Band:
    low: float
    high: float
    labelled: int
    bad_rate: float


@dataclass(frozen=True, slots=True)
class VersionPerformance:
    model_name: str
    model_version: str
    arm: str
    labelled: int
    bad: int
    auc: float
    ks: float
    bands: tuple[Band, ...]
    enough: bool
    """At least MIN_LABELLED labelled decisions, MIN_EACH of them bad and MIN_EACH good."""


def performance(
    rows: Iterable[Labelled], bad_labels: Collection[str], bands: int = BANDS
) -> list[VersionPerformance]:
    grouped: dict[tuple[str, str, str], list[Labelled]] = {}
    for r in rows:
        grouped.setdefault((r.model_name, r.model_version, r.arm), []).append(r)
    out = []
    for (name, version, arm), labelled in sorted(grouped.items()):
        scores = [r.score for r in labelled]
        bad = [r.label in bad_labels for r in labelled]
        n_bad = sum(bad)
        per_band: list[Band] = []
        for i in range(bands):
            low, high = i / bands, (i + 1) / bands
            inside = [
                b for s, b in zip(scores, bad, strict=True)
                if low <= s < high or (i == bands - 1 and s == 1.0)
            ]  # fmt: skip
            rate = sum(inside) / len(inside) if inside else float("nan")
            per_band.append(Band(low, high, len(inside), rate))
        enough = (
            len(labelled) >= MIN_LABELLED
            and n_bad >= MIN_EACH
            and len(labelled) - n_bad >= MIN_EACH
        )
        out.append(
            VersionPerformance(
                name,
                version,
                arm,
                len(labelled),
                n_bad,
                measures.auc(scores, bad),
                measures.ks(scores, bad),
                tuple(per_band),
                enough,
            )
        )
    return out
