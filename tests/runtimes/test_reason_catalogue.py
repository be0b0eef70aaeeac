"""A model's reason catalogue is refused, naming the bad entry, unless it covers every feature
with unique codes and non-empty statements, and matches the sha256 its manifest records."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from loadtests.local.topology import TopologyError, demo_routes, start_gateway, start_runtime
from runtimes.manifest import Manifest, load_manifests
from runtimes.reasons import (
    CATALOGUE_FILE,
    ReasonCatalogue,
    ReasonCatalogueError,
    ReasonEntry,
    ReasonRanker,
    catalogue_bytes,
    catalogue_sha256,
    read_catalogue,
    training_median,
    validate,
)
from runtimes.training.catalogues import demo_catalogue


@pytest.fixture(scope="module")
def credit(model_dir: Path) -> Manifest:
    return load_manifests(model_dir)[("credit-risk", "1")]


def _with(catalogue: ReasonCatalogue, reasons: tuple[ReasonEntry, ...]) -> ReasonCatalogue:
    return catalogue.model_copy(update={"reasons": reasons})


@pytest.mark.parametrize(
    ("name", "version"),
    [
        ("card-fraud", "1"),
        ("card-fraud", "2"),
        ("churn", "1"),
        ("credit-risk", "1"),
        ("trade-anomaly", "1"),
    ],
)
def test_every_demo_catalogue_covers_its_model(model_dir: Path, name: str, version: str) -> None:
    manifest = load_manifests(model_dir)[(name, version)]
    catalogue = demo_catalogue(name, version)
    validate(catalogue, manifest, Path(CATALOGUE_FILE))
    assert {e.feature for e in catalogue.reasons} == {f.name for f in manifest.features}


def test_a_feature_without_a_reason_is_refused_naming_it(credit: Manifest) -> None:
    full = demo_catalogue("credit-risk", "1")
    reasons = tuple(
        e for e in full.reasons if not (e.feature == "debt_to_income" and e.side == "low")
    )
    with pytest.raises(
        ReasonCatalogueError, match=r"feature 'debt_to_income' has no reason for side low"
    ):
        validate(_with(full, reasons), credit, Path("reasons.json"))
    reasons = tuple(e for e in full.reasons if e.feature != "home_owner" or e.value != "true")
    with pytest.raises(ReasonCatalogueError, match=r"'home_owner' has no reason for value 'true'"):
        validate(_with(full, reasons), credit, Path("reasons.json"))


def test_a_duplicate_code_is_refused_naming_both_entries(credit: Manifest) -> None:
    full = demo_catalogue("credit-risk", "1")
    copy = full.reasons[3].model_copy(update={"code": full.reasons[0].code})
    reasons = (*full.reasons[:3], copy, *full.reasons[4:])
    with pytest.raises(
        ReasonCatalogueError, match=r"reasons\[3\] \(R14, .*already used by reasons\[0\]"
    ):
        validate(_with(full, reasons), credit, Path("reasons.json"))


@pytest.mark.parametrize(
    ("update", "problem"),
    [
        ({"statement": "   "}, "the statement is empty"),
        ({"feature": "shoe_size"}, "the model has no feature 'shoe_size'"),
        ({"side": None, "value": "high"}, "a number feature takes side, not value"),
    ],
)
def test_a_bad_entry_is_refused_naming_it(
    credit: Manifest, update: dict[str, object], problem: str
) -> None:
    full = demo_catalogue("credit-risk", "1")
    bad = full.reasons[2].model_copy(update=update)
    reasons = (*full.reasons[:2], bad, *full.reasons[3:])
    with pytest.raises(ReasonCatalogueError, match=r"reasons\[2\]") as caught:
        validate(_with(full, reasons), credit, Path("reasons.json"))
    assert problem in str(caught.value)


def test_a_catalogue_whose_sha256_does_not_match_the_manifest_is_refused(
    credit: Manifest, tmp_path: Path
) -> None:
    data = catalogue_bytes(demo_catalogue("credit-risk", "1"))
    (tmp_path / CATALOGUE_FILE).write_bytes(data)
    assert read_catalogue(tmp_path, credit, catalogue_sha256(data)).catalogue_version
    (tmp_path / CATALOGUE_FILE).write_bytes(data.replace(b"too short", b"fine"))
    with pytest.raises(ReasonCatalogueError, match=rf"{CATALOGUE_FILE}: sha256 .* does not match"):
        read_catalogue(tmp_path, credit, catalogue_sha256(data))
    with pytest.raises(ReasonCatalogueError, match="no reason catalogue"):
        read_catalogue(tmp_path / "elsewhere", credit, catalogue_sha256(data))


def test_a_catalogue_for_another_model_is_refused(credit: Manifest) -> None:
    with pytest.raises(ReasonCatalogueError, match="not for credit-risk v1"):
        validate(demo_catalogue("card-fraud", "1"), credit, Path("reasons.json"))


def test_the_most_specific_entry_describes_a_value() -> None:
    catalogue = demo_catalogue("card-fraud", "1")
    assert catalogue.entry_for("channel", None, "ecommerce").code == "F04"
    assert catalogue.entry_for("channel", None, "pos").code == "F06"
    assert catalogue.entry_for("amount", "low", None).code == "F02"


def test_reasons_are_the_adverse_contributions_largest_first_at_most_four(credit: Manifest) -> None:
    ranker = ReasonRanker(credit, demo_catalogue("credit-risk", "1"))
    names = [f.name for f in credit.features]
    row = {"annual_income": 12_000.0, "debt_to_income": 1.4, "credit_history_months": 8.0,
           "delinquencies_2y": 3.0, "loan_amount": 9_000.0, "employment_type": "student",
           "home_owner": False, "age": 22.0}  # fmt: skip
    by_name = {"annual_income": 0.5, "debt_to_income": 1.2, "credit_history_months": 0.3,
               "delinquencies_2y": 0.5, "loan_amount": -0.2, "employment_type": 0.05,
               "home_owner": 0.1, "age": -0.4}  # fmt: skip
    reasons = ranker.rank([by_name[n] for n in names], row)
    assert [r.rank for r in reasons] == [1, 2, 3, 4]
    # 1.2, then the tie 0.5/0.5 in the manifest's order, then 0.3; nothing that lowered the risk.
    assert [r.code for r in reasons] == ["R03", "R01", "R07", "R05"]
    assert reasons[0].statement == "Debt obligations are high relative to income"
    assert [r.code for r in ranker.rank([by_name[n] for n in names], row, limit=2)] == [
        "R03",
        "R01",
    ]
    assert len(ranker.rank([by_name[n] for n in names], row, limit=9)) == 4
    assert ranker.rank([-1.0] * len(names), row) == ()


def test_a_reason_says_which_side_of_the_training_median_or_the_absence(credit: Manifest) -> None:
    ranker = ReasonRanker(credit, demo_catalogue("credit-risk", "1"))
    names = [f.name for f in credit.features]
    only_history = [1.0 if n == "credit_history_months" else 0.0 for n in names]
    median = training_median(credit.baselines["credit_history_months"])
    assert 0 < median < 1200
    assert ranker.rank(only_history, {"credit_history_months": median / 2})[0].code == "R05"
    assert ranker.rank(only_history, {"credit_history_months": median * 2})[0].code == "R06"
    assert ranker.rank(only_history, {})[0].code == "R14"  # left out: "No credit history on file"
    only_home = [1.0 if n == "home_owner" else 0.0 for n in names]
    assert ranker.rank(only_home, {"home_owner": False})[0].code == "R11"


def test_an_optional_feature_without_an_absence_reason_is_refused(model_dir: Path) -> None:
    fraud = load_manifests(model_dir)[("card-fraud", "1")]
    full = demo_catalogue("card-fraud", "1")
    with pytest.raises(
        ReasonCatalogueError, match="'distance_from_home_km' has no reason for its absence"
    ):
        validate(_with(full, tuple(e for e in full.reasons if not e.absent)), fraud, Path("r.json"))


def test_the_builder_writes_each_catalogue_beside_its_manifest(model_dir: Path) -> None:
    for (name, version), manifest in load_manifests(model_dir).items():
        folder = model_dir / name / version
        catalogue = read_catalogue(folder, manifest, manifest.reason_catalogue_sha256)
        assert catalogue.catalogue_version == f"{name}-v{version}-reasons-1"


@pytest.mark.parametrize("server", ["gateway", "runtime"])
def test_a_tampered_catalogue_stops_the_gateway_and_the_runtime_naming_it(
    model_dir: Path, tmp_path: Path, server: str
) -> None:
    """Changing an approved statement without rebuilding: the real processes refuse to start."""
    models = tmp_path / "models"
    shutil.copytree(model_dir, models)
    reasons = models / "credit-risk" / "1" / CATALOGUE_FILE
    reasons.write_text(reasons.read_text().replace("too short", "a little short"))
    with pytest.raises(TopologyError) as caught:
        if server == "runtime":
            start_runtime(models, tmp_path / "run")
        else:
            routes = tmp_path / "routes.yaml"
            manifests = load_manifests(models)
            routes.write_text(
                yaml.safe_dump(demo_routes(manifests, "127.0.0.1:9"), sort_keys=False)
            )
            start_gateway(routes, models, tmp_path / "run")
    assert f"{reasons}: sha256" in str(caught.value)
    assert "does not match the manifest's" in str(caught.value)
