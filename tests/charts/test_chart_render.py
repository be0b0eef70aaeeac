"""Every scenario renders with Helm and every object passes the schemas a cluster would apply."""

from __future__ import annotations

from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest
from chart_support import (
    CHART_DIR,
    KSERVE_KINDS,
    KUBERNETES_VERSION,
    SCENARIOS_EXPECTED,
    Rendered,
    load_values,
    scenario_files,
)

# Custom resources Kubernetes' own schemas do not cover: KServe's are checked against its CRDs
# below, cert-manager's and Istio's in test_chart_transport_security.py.
CRD_GROUPS = ("monitoring.coreos.com/", "cert-manager.io/", "security.istio.io/")


def test_every_scenario_is_rendered() -> None:
    assert set(scenario_files()) == SCENARIOS_EXPECTED


def test_objects_validate_against_kubernetes_strictly(rendered: Rendered) -> None:
    """Core objects against Kubernetes' own OpenAPI schemas; strict refuses unknown fields."""
    checked = 0
    for obj in rendered.objects:
        if obj["kind"] in KSERVE_KINDS or obj["apiVersion"].startswith(CRD_GROUPS):
            continue
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            where = ".".join(str(p) for p in e.path)
            pytest.fail(
                f"{rendered.scenario}: {obj['kind']}/{obj['metadata']['name']}: {where}: {e}"
            )
        checked += 1
    assert checked >= 10


def test_kserve_objects_validate_against_the_crds(
    rendered: Rendered, kserve_schemas: dict[tuple[str, str], dict[str, Any]]
) -> None:
    kserve = [o for o in rendered.objects if o["kind"] in KSERVE_KINDS]
    assert {o["kind"] for o in kserve} >= {"InferenceService"}
    for obj in kserve:
        schema = kserve_schemas[(obj["apiVersion"], obj["kind"])]
        errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(obj), key=str)
        assert not errors, f"{obj['kind']}/{obj['metadata']['name']}: " + "; ".join(
            f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in errors
        )


def test_the_crd_check_refuses_a_misspelt_field(
    renders: dict[str, Rendered], kserve_schemas: dict[tuple[str, str], dict[str, Any]]
) -> None:
    """The strict CRD check can fail: a typo Kubernetes would silently prune is caught."""
    isvc = renders["default"].of_kind("InferenceService")[0]
    typo = {**isvc, "spec": {"predictor": {**isvc["spec"]["predictor"], "minReplica": 1}}}
    schema = kserve_schemas[(isvc["apiVersion"], isvc["kind"])]
    assert any(
        "minReplica" in e.message for e in jsonschema.Draft7Validator(schema).iter_errors(typo)
    )


def test_helm_lint_is_clean_in_strict_mode() -> None:
    for name, path in scenario_files().items():
        report = helm.lint(CHART_DIR, load_values(path), strict=True, namespace="scoring")
        problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
        assert not problems, f"{name}: {problems}"


def test_object_names_fit_dns_labels(rendered: Rendered) -> None:
    for obj in rendered.objects:
        name = obj["metadata"]["name"]
        assert len(name) <= 63 and name == name.lower(), name
