"""The reason catalogue: the stable codes and applicant-facing statements a model's decisions
give as their principal reasons (adverse-action notices, fraud alerts).

One catalogue per model version, a JSON file beside its manifest (``reasons.json``), whose
sha256 the manifest records, so a decision's reasons resolve to exactly one approved text. An
entry says, for one feature, when the feature pushed the score towards the adverse outcome,
which code and statement describe that:

- a number feature: for a value above its training median (``side: high``), below it
  (``side: low``), or either (no side);
- a category or boolean feature: for one value (``value``), or any value (no value);
- an optional feature: when the request left it out (``absent: true``).

A catalogue is refused, naming the bad entry, unless every feature of the manifest is covered
(a number by an entry without side or by both sides; a category or boolean by an entry without
value or by one for each of its values; an optional feature's absence by an ``absent`` entry),
codes are unique, and no statement is empty. It is
checked when the model is built and whenever the gateway loads the model.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from runtimes.manifest import (
    BooleanFeature,
    CategoryFeature,
    Feature,
    Histogram,
    Manifest,
    ManifestError,
    NumberFeature,
    load_manifests,
)

CATALOGUE_FILE = "reasons.json"
MAX_STATEMENT_CHARS = 200
"""Long enough for a notice's sentence; a statement is not a paragraph."""

Side = Literal["high", "low"]
BOOLEAN_VALUES = ("false", "true")
"""How a boolean feature's values are named in ``value``."""


class ReasonCatalogueError(ManifestError):
    """A catalogue that cannot be used, with the file and the entry at fault (a problem with a
    model version's files, like its manifest's)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReasonEntry(_Strict):
    code: str = Field(min_length=1, max_length=32, pattern=r"^[A-Z0-9_]+$")
    """Stable across catalogue versions for the same meaning, e.g. ``R04``."""
    feature: str
    side: Side | None = None
    value: str | None = None
    absent: bool = False
    """The entry describes the feature's absence (an optional feature left out)."""
    statement: str = Field(max_length=MAX_STATEMENT_CHARS)
    """What the applicant or analyst reads, e.g. "Time since account opening is too short"."""


class ReasonCatalogue(_Strict):
    schema_version: Literal[1] = 1
    model: str
    model_version: str
    catalogue_version: str = Field(min_length=1, max_length=64)
    """Recorded with every decision whose reasons came from this catalogue."""
    reasons: tuple[ReasonEntry, ...]

    def entry_for(
        self, feature: str, side: Side | None, value: str | None, absent: bool = False
    ) -> ReasonEntry:
        """The entry describing ``feature`` as adverse for this side or value, or its absence
        (the most specific one); KeyError when none does, which a validated catalogue never
        raises."""
        best: ReasonEntry | None = None
        for entry in self.reasons:
            if entry.feature != feature or entry.absent != absent:
                continue
            if entry.side is not None and entry.side != side:
                continue
            if entry.value is not None and entry.value != value:
                continue
            if best is None or (entry.side or entry.value) is not None:
                best = entry
        if best is None:
            raise KeyError(feature)
        return best


def catalogue_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _where(path: Path, i: int, entry: ReasonEntry) -> str:
    return f"{path}: reasons[{i}] ({entry.code}, feature {entry.feature!r})"


def validate(catalogue: ReasonCatalogue, manifest: Manifest, path: Path) -> None:
    """Raises ReasonCatalogueError naming the first problem (see the module docstring)."""
    if (catalogue.model, catalogue.model_version) != (manifest.name, manifest.version):
        raise ReasonCatalogueError(
            f"{path}: a catalogue for {catalogue.model} v{catalogue.model_version}, not for "
            f"{manifest.name} v{manifest.version}"
        )
    features: dict[str, Feature] = {f.name: f for f in manifest.features}
    codes: dict[str, int] = {}
    for i, entry in enumerate(catalogue.reasons):
        where = _where(path, i, entry)
        if entry.code in codes:
            raise ReasonCatalogueError(
                f"{where}: code {entry.code} is already used by reasons[{codes[entry.code]}]"
            )
        codes[entry.code] = i
        if not entry.statement.strip():
            raise ReasonCatalogueError(f"{where}: the statement is empty")
        feature = features.get(entry.feature)
        if feature is None:
            raise ReasonCatalogueError(f"{where}: the model has no feature {entry.feature!r}")
        if entry.absent:
            if feature.required:
                raise ReasonCatalogueError(f"{where}: a required feature is never absent")
            if entry.side is not None or entry.value is not None:
                raise ReasonCatalogueError(f"{where}: an absent entry takes no side or value")
            continue
        if isinstance(feature, NumberFeature):
            if entry.value is not None:
                raise ReasonCatalogueError(f"{where}: a number feature takes side, not value")
        else:
            if entry.side is not None:
                raise ReasonCatalogueError(f"{where}: only a number feature takes a side")
            allowed = _values(feature)
            if entry.value is not None and entry.value not in allowed:
                raise ReasonCatalogueError(
                    f"{where}: value {entry.value!r} is not one of {', '.join(allowed)}"
                )
    for feature in manifest.features:
        missing = _uncovered(feature, catalogue)
        if missing:
            raise ReasonCatalogueError(
                f"{path}: feature {feature.name!r} has no reason for {', '.join(missing)}"
            )


def _values(feature: Feature) -> tuple[str, ...]:
    if isinstance(feature, CategoryFeature):
        return feature.categories
    assert isinstance(feature, BooleanFeature)
    return BOOLEAN_VALUES


def _uncovered(feature: Feature, catalogue: ReasonCatalogue) -> list[str]:
    entries = [e for e in catalogue.reasons if e.feature == feature.name]
    missing = [] if feature.required or any(e.absent for e in entries) else ["its absence"]
    entries = [e for e in entries if not e.absent]
    if isinstance(feature, NumberFeature):
        if not any(e.side is None for e in entries):
            sides = {e.side for e in entries}
            missing += [f"side {s}" for s in ("high", "low") if s not in sides]
    elif not any(e.value is None for e in entries):
        values = {e.value for e in entries}
        missing += [f"value {v!r}" for v in _values(feature) if v not in values]
    return missing


def read_catalogue(folder: Path, manifest: Manifest, sha256: str) -> ReasonCatalogue:
    """``folder/reasons.json``, checked against ``sha256`` (the manifest's) and the manifest's
    features; ReasonCatalogueError naming the file and what is wrong otherwise."""
    path = folder / CATALOGUE_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ReasonCatalogueError(f"{path}: no reason catalogue") from None
    actual = catalogue_sha256(data)
    if actual != sha256:
        raise ReasonCatalogueError(
            f"{path}: sha256 {actual} does not match the manifest's {sha256}; refusing it"
        )
    try:
        catalogue = ReasonCatalogue.model_validate_json(data)
    except ValidationError as e:
        raise ReasonCatalogueError(f"{path}: invalid catalogue: {e}") from None
    validate(catalogue, manifest, path)
    return catalogue


def catalogue_bytes(catalogue: ReasonCatalogue) -> bytes:
    """The catalogue as written beside a manifest: the same bytes for the same catalogue."""
    text = json.dumps(catalogue.model_dump(mode="json", exclude_none=True), indent=2)
    return (text + "\n").encode()


MAX_REASONS = 4
"""Regulation B and FCRA: at most four principal reasons, in order of importance."""


@dataclass(frozen=True, slots=True)
class Reason:
    """One ranked reason: 1 is the principal one."""

    rank: int
    code: str
    statement: str
    feature: str
    contribution: float


def training_median(histogram: Histogram) -> float:
    """The median of a number feature's training values, from its baseline histogram (linear
    within the bin that holds it): the line between its "high" and "low" sides."""
    counts, edges = histogram.counts, histogram.edges
    half = sum(counts) / 2
    seen = 0
    for count, low, high in zip(counts, edges, edges[1:], strict=False):
        if count and seen + count >= half:
            return low + (high - low) * (half - seen) / count
        seen += count
    return edges[-1]


class ReasonRanker:
    """Turns a row's feature contributions into its principal reasons, through one catalogue.

    Only features that pushed the score towards the adverse outcome (a positive contribution to
    the log-odds of fraud or default) can be reasons; the largest first; ties in the manifest's
    feature order; at most ``MAX_REASONS``."""

    __slots__ = ("_catalogue", "_entries", "_features", "_medians", "_names")

    def __init__(self, manifest: Manifest, catalogue: ReasonCatalogue) -> None:
        self._catalogue = catalogue
        self._features = manifest.features
        self._names = tuple(f.name for f in manifest.features)
        self._medians = {
            f.name: training_median(manifest.baselines[f.name])
            for f in manifest.features
            if isinstance(f, NumberFeature)
        }
        # Every (feature, side, value, absent) a row can present, resolved once: ranking a
        # decision's reasons is then a lookup per reason, not a scan of the catalogue.
        keys: list[tuple[str, Side | None, str | None, bool]] = []
        for f in manifest.features:
            if isinstance(f, NumberFeature):
                keys += [(f.name, "high", None, False), (f.name, "low", None, False)]
            else:
                keys += [(f.name, None, v, False) for v in _values(f)]
            if not f.required:
                keys.append((f.name, None, None, True))
        self._entries = {key: catalogue.entry_for(*key) for key in keys}

    @property
    def catalogue_version(self) -> str:
        return self._catalogue.catalogue_version

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The features contributions are given for, in the manifest's order."""
        return self._names

    def rank(
        self,
        contributions: Sequence[float],
        features: Mapping[str, float | str | bool],
        limit: int = MAX_REASONS,
    ) -> tuple[Reason, ...]:
        """``contributions`` in the manifest's feature order; ``features`` the snapshot as
        recorded (absent optional features left out)."""
        adverse = sorted((-c, i) for i, c in enumerate(contributions) if c > 0.0)[
            : min(limit, MAX_REASONS)
        ]
        reasons = []
        for rank, (negative, i) in enumerate(adverse, start=1):
            feature = self._features[i]
            value = features.get(feature.name)
            name = feature.name
            if value is None:
                entry = self._entries[(name, None, None, True)]
            elif isinstance(feature, NumberFeature):
                side: Side = "high" if float(value) >= self._medians[name] else "low"
                entry = self._entries[(name, side, None, False)]
            elif isinstance(value, bool):
                entry = self._entries[(name, None, BOOLEAN_VALUES[value], False)]
            else:
                entry = self._entries[(name, None, str(value), False)]
            reasons.append(Reason(rank, entry.code, entry.statement, feature.name, -negative))
        return tuple(reasons)


@dataclass(frozen=True, slots=True)
class CheckedModels:
    """A model directory's manifests, and the reason catalogue of each version that has one."""

    manifests: dict[tuple[str, str], Manifest]
    catalogues: dict[tuple[str, str], ReasonCatalogue]


def load_checked_models(root: Path) -> CheckedModels:
    """``load_manifests(root)``, each version's reason catalogue read and checked too (when its
    manifest names one): what the gateway loads at start and at every reload."""
    catalogues: dict[tuple[str, str], ReasonCatalogue] = {}

    def check(folder: Path, manifest: Manifest) -> None:
        if manifest.reason_catalogue_sha256:
            catalogue = read_catalogue(folder, manifest, manifest.reason_catalogue_sha256)
            catalogues[(manifest.name, manifest.version)] = catalogue

    return CheckedModels(load_manifests(root, check=check), catalogues)
