"""Features marked sensitive: older manifests still load, and the mark is no schema change."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runtimes.manifest import Manifest, read_manifest


def test_an_older_manifest_without_marks_loads_with_every_feature_marked_none(
    model_dir: Path, tmp_path: Path
) -> None:
    folder = next(p.parent for p in model_dir.rglob("manifest.json") if "credit-risk" in str(p))
    body = json.loads((folder / "manifest.json").read_text())
    for feature in body["features"]:
        feature.pop("sensitive", None)
    (tmp_path / "manifest.json").write_text(json.dumps(body))
    older = read_manifest(tmp_path)
    current = read_manifest(folder)
    assert {f.sensitive for f in older.features} == {"none"}
    assert {f.name for f in current.features if f.sensitive == "personal"} >= {
        "age",
        "annual_income",
    }
    # Labelling a feature changes how its values are handled, not what the model is given.
    assert older.feature_schema_version == current.feature_schema_version


def test_an_unknown_mark_is_refused(model_dir: Path) -> None:
    path = next(model_dir.rglob("manifest.json"))
    body = json.loads(path.read_text())
    body["features"][0]["sensitive"] = "secret"
    with pytest.raises(ValueError, match="sensitive"):
        Manifest.model_validate(body)
