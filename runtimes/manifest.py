"""The model manifest: the contract between a trained artifact, its runtime and the gateway.

Every model version is a folder holding ``model.onnx`` and ``manifest.json``. The runtime refuses an
artifact whose sha256 differs from the manifest; the gateway validates requests against the feature
schema; the lineage store keeps manifests by artifact sha256 so each decision resolves to one.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

MANIFEST_FILE = "manifest.json"
ARTIFACT_FILE = "model.onnx"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Absence = Literal["default", "missing"]
"""How an optional feature that a request leaves out reaches the model:

- ``default``: as the manifest's ``default`` value, which the model was trained to read as
  "not known" (e.g. 0 months of credit history for an applicant with no credit file);
- ``missing``: as the graph's missing value, which the exported graph handles itself (NaN for a
  number or boolean, e.g. a tree ensemble trained with missing values or an imputer inside the
  graph; the empty string for a category, which the graph's one-hot encoding reads as none).

Either way the decision record stores the feature as absent, not as what the model was given.
"""

Sensitivity = Literal["pan", "personal", "none"]
"""What a feature's values are, for where they may go:

- ``pan``: a payment card number, or a value derived from one that can be mapped back to it;
- ``personal``: data about an identifiable person (age, income, an address);
- ``none``: neither.

Whatever the label, feature values go only into the lineage store's decision records, never into
general tracing, logs or metrics. The label adds: a ``pan`` or ``personal`` value is never echoed
back in an error message, and a reviewer sees what the record holds.
"""

MISSING_CATEGORY = ""
"""The string a category declared ``absent: missing`` is sent as when a request leaves it out."""


class _Feature(_Strict):
    name: str
    description: str = ""
    required: bool = True
    absent: Absence | None = None
    """For an optional feature (``required: false``), how its absence reaches the model."""
    sensitive: Sensitivity = "none"
    """How personal the feature's values are (see ``Sensitivity``); not part of the feature
    schema version."""

    def _check_absence(self, default: object) -> None:
        if self.required:
            if self.absent is not None or default is not None:
                raise ValueError(
                    f"feature {self.name!r}: a required feature has no 'absent' or 'default'"
                )
            return
        if self.absent is None:
            raise ValueError(
                f"feature {self.name!r}: an optional feature must say how its absence reaches "
                "the model: absent: default (with a default) or absent: missing"
            )
        if self.absent == "default" and default is None:
            raise ValueError(f"feature {self.name!r}: absent: default needs a default value")
        if self.absent == "missing" and default is not None:
            raise ValueError(
                f"feature {self.name!r}: absent: missing takes no default (the graph handles "
                "the missing value itself)"
            )


class NumberFeature(_Feature):
    """A numeric feature, fed to the ONNX graph as a float32 [N, 1] tensor."""

    type: Literal["number"] = "number"
    min: float
    max: float
    default: float | None = None

    @model_validator(mode="after")
    def _valid_absence(self) -> NumberFeature:
        self._check_absence(self.default)
        if self.default is not None and not self.min <= self.default <= self.max:
            raise ValueError(
                f"feature {self.name!r}: default {self.default:g} is outside "
                f"[{self.min:g}, {self.max:g}]"
            )
        return self


class CategoryFeature(_Feature):
    """A categorical feature, fed as a BYTES (string) [N, 1] tensor and encoded inside the graph."""

    type: Literal["category"] = "category"
    categories: tuple[str, ...]
    default: str | None = None

    @model_validator(mode="after")
    def _valid_absence(self) -> CategoryFeature:
        self._check_absence(self.default)
        if self.default is not None and self.default not in self.categories:
            raise ValueError(
                f"feature {self.name!r}: default {self.default!r} is not one of its categories"
            )
        if MISSING_CATEGORY in self.categories:
            raise ValueError(f"feature {self.name!r}: the empty string cannot be a category")
        return self


class BooleanFeature(_Feature):
    """A yes/no feature, fed as a float32 [N, 1] tensor holding 0.0 or 1.0."""

    type: Literal["boolean"] = "boolean"
    default: bool | None = None

    @model_validator(mode="after")
    def _valid_absence(self) -> BooleanFeature:
        self._check_absence(self.default)
        return self


Feature = Annotated[NumberFeature | CategoryFeature | BooleanFeature, Field(discriminator="type")]


class Outputs(_Strict):
    """Where the score is in the graph's outputs."""

    label: str = "label"
    probabilities: str = "probabilities"
    positive_class_index: int = 1


class Histogram(_Strict):
    """A baseline distribution: ``edges`` for numbers (len(counts) + 1), else ``categories``."""

    counts: tuple[int, ...]
    edges: tuple[float, ...] = ()
    categories: tuple[str, ...] = ()
    missing: int = 0
    """Training rows where an optional feature was absent (not in ``counts``)."""


class Training(_Strict):
    """How the artifact was produced, so it can be reproduced and audited."""

    algorithm: str
    seed: int
    rows: int
    heldout_rows: int
    data_fingerprint: str = Field(description="sha256 of the training data as float64/str bytes")
    heldout_auc: float
    libraries: dict[str, str]


class Manifest(_Strict):
    """Everything the platform needs to know about one model version."""

    schema_version: Literal[1] = 1
    name: str
    version: str
    description: str = ""
    author: str = ""
    """Who built the model, as a principal of the lineage store's access policy: an approval of
    the version by someone else is what the four-eyes rule asks for. Empty: not recorded (a
    manifest from before the field), and no approver is taken for the author."""
    features: tuple[Feature, ...]
    outputs: Outputs = Outputs()
    artifact: str = ARTIFACT_FILE
    artifact_sha256: str
    training: Training
    baselines: dict[str, Histogram] = Field(
        description="per feature name, plus 'score': distributions on the training set"
    )
    reason_catalogue_sha256: str = ""
    """sha256 of the ``reasons.json`` beside the manifest (``runtimes.reasons``); empty: the
    model gives no reasons."""

    @property
    def served_name(self) -> str:
        """The OIP v2 model name a runtime serves this version under."""
        return served_name(self.name, self.version)

    @property
    def feature_schema_version(self) -> str:
        """A short hash of the feature schema; changes whenever a feature's contract does."""
        canonical = json.dumps(
            [_schema_fields(f) for f in self.features],
            sort_keys=True,
            separators=(",", ":"),
        )
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _schema_fields(feature: Feature) -> dict[str, object]:
    # ``absent`` and ``default`` are left out while unset, so a required feature hashes as it did
    # before optional features could say how they are absent. ``sensitive`` is left out always:
    # it says how values are handled, not what the model is given, so labelling a feature (a
    # privacy review, after the fact) neither makes a new schema version nor splits the drift
    # and replay comparisons that key on it.
    fields = feature.model_dump(mode="json", exclude={"sensitive"})
    for key in ("absent", "default"):
        if fields.get(key) is None:
            fields.pop(key, None)
    return fields


def absent_value(feature: Feature) -> float | str | bool:
    """What the model is given for an optional feature a request leaves out (see ``Absence``):
    its default, or the graph's missing value (NaN; the empty string for a category)."""
    default = feature.default
    if default is not None:
        return default
    return MISSING_CATEGORY if isinstance(feature, CategoryFeature) else math.nan


def served_name(name: str, version: str) -> str:
    """OIP v2 model name for one version: KServe ignores ``model_version``, so it is in the name."""
    return f"{name}-v{version}"


class ManifestError(Exception):
    """A manifest is unreadable or does not match its artifact."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(folder: Path) -> Manifest:
    """Reads ``folder/manifest.json``; raises ManifestError naming the file on any problem."""
    path = folder / MANIFEST_FILE
    try:
        return Manifest.model_validate_json(path.read_bytes())
    except FileNotFoundError as e:
        raise ManifestError(f"{path}: no manifest") from e
    except ValueError as e:
        raise ManifestError(f"{path}: invalid manifest: {e}") from e


def verify_artifact(folder: Path, manifest: Manifest) -> Path:
    """Returns the artifact path after checking its sha256 against the manifest."""
    artifact = folder / manifest.artifact
    if not artifact.is_file():
        raise ManifestError(f"{artifact}: artifact missing for {manifest.served_name}")
    actual = sha256_file(artifact)
    if actual != manifest.artifact_sha256:
        raise ManifestError(
            f"{artifact}: sha256 {actual} does not match manifest {manifest.artifact_sha256} "
            f"for {manifest.served_name}; refusing to load"
        )
    return artifact


def find_model_folders(root: Path) -> list[Path]:
    """Model version folders under ``root`` (``root`` itself if it holds a manifest), sorted."""
    if (root / MANIFEST_FILE).is_file():
        return [root]
    return sorted(p.parent for p in root.rglob(MANIFEST_FILE))


def load_manifests(
    root: Path, check: Callable[[Path, Manifest], None] | None = None
) -> dict[tuple[str, str], Manifest]:
    """All manifests under ``root`` keyed by (name, version); duplicates are an error.
    ``check(folder, manifest)``, when given, vets each version's other files (it raises a
    ManifestError)."""
    found: dict[tuple[str, str], Manifest] = {}
    for folder in find_model_folders(root):
        m = read_manifest(folder)
        if check is not None:
            check(folder, m)
        key = (m.name, m.version)
        if key in found:
            raise ManifestError(f"{folder}: duplicate manifest for {m.served_name}")
        found[key] = m
    return found
