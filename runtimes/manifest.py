"""The model manifest: the contract between a trained artifact, its runtime and the gateway.

Every model version is a folder holding ``model.onnx`` and ``manifest.json``. The runtime refuses an
artifact whose sha256 differs from the manifest; the gateway validates requests against the feature
schema; the lineage store keeps manifests by artifact sha256 so each decision resolves to one.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

MANIFEST_FILE = "manifest.json"
ARTIFACT_FILE = "model.onnx"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NumberFeature(_Strict):
    """A numeric feature, fed to the ONNX graph as a float32 [N, 1] tensor."""

    name: str
    type: Literal["number"] = "number"
    description: str = ""
    required: bool = True
    min: float
    max: float


class CategoryFeature(_Strict):
    """A categorical feature, fed as a BYTES (string) [N, 1] tensor and encoded inside the graph."""

    name: str
    type: Literal["category"] = "category"
    description: str = ""
    required: bool = True
    categories: tuple[str, ...]


class BooleanFeature(_Strict):
    """A yes/no feature, fed as a float32 [N, 1] tensor holding 0.0 or 1.0."""

    name: str
    type: Literal["boolean"] = "boolean"
    description: str = ""
    required: bool = True


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
    features: tuple[Feature, ...]
    outputs: Outputs = Outputs()
    artifact: str = ARTIFACT_FILE
    artifact_sha256: str
    training: Training
    baselines: dict[str, Histogram] = Field(
        description="per feature name, plus 'score': distributions on the training set"
    )

    @property
    def served_name(self) -> str:
        """The OIP v2 model name a runtime serves this version under."""
        return served_name(self.name, self.version)

    @property
    def feature_schema_version(self) -> str:
        """A short hash of the feature schema; changes whenever a feature's contract does."""
        canonical = json.dumps(
            [f.model_dump(mode="json") for f in self.features],
            sort_keys=True,
            separators=(",", ":"),
        )
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


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


def load_manifests(root: Path) -> dict[tuple[str, str], Manifest]:
    """All manifests under ``root`` keyed by (name, version); duplicates are an error."""
    found: dict[tuple[str, str], Manifest] = {}
    for folder in find_model_folders(root):
        m = read_manifest(folder)
        key = (m.name, m.version)
        if key in found:
            raise ManifestError(f"{folder}: duplicate manifest for {m.served_name}")
        found[key] = m
    return found
