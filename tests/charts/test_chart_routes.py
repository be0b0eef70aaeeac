"""The routes ConfigMap the chart renders is a config the gateway's own loader accepts."""

from __future__ import annotations

from pathlib import Path

import yaml
from chart_support import CI_DIR, NAMESPACE, Rendered, render

from gateway.routes import DecisionPoint, load_routes
from runtimes.manifest import load_manifests


def test_rendered_routes_load_in_the_gateway(
    rendered: Rendered, model_dir: Path, tmp_path: Path
) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(rendered.routes_yaml())
    routes = load_routes(path, load_manifests(model_dir))
    expected_points = set(rendered.values.get("routes", {}).get("decision_points", {})) or {
        "card-fraud",
        "credit-risk",
    }
    assert set(routes.decision_points) >= {
        p for p in expected_points if p in routes.decision_points
    }
    assert routes.decision_points, rendered.scenario
    # One target per InferenceService, dialled through its predictor Service on port 80.
    isvcs = {o["metadata"]["name"] for o in rendered.of_kind("InferenceService")}
    endpoints = {e for t in routes.targets for e in t.endpoints}
    assert endpoints == {f"{n}-predictor.{NAMESPACE}.svc.cluster.local:80" for n in isvcs}


def test_canary_scenario_routes_champion_and_challenger(
    renders: dict[str, Rendered], model_dir: Path, tmp_path: Path
) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(renders["canary-in-progress"].routes_yaml())
    point = load_routes(path, load_manifests(model_dir)).decision_points["card-fraud"]
    assert point.primary.version == "1"
    assert set(point.versions) == {"1", "2"}


def _card_fraud(rendered: Rendered, model_dir: Path, tmp_path: Path) -> DecisionPoint:
    path = tmp_path / f"{len(list(tmp_path.iterdir()))}-routes.yaml"
    path.write_text(rendered.routes_yaml())
    return load_routes(path, load_manifests(model_dir)).decision_points["card-fraud"]


def _checksum(rendered: Rendered) -> str:
    template = rendered.component("Deployment", "gateway")["spec"]["template"]
    return str(template["metadata"]["annotations"]["checksum/config"])


def test_ramp_promotion_and_rollback_are_values_changes(model_dir: Path, tmp_path: Path) -> None:
    """docs/helm.md's canary procedure, each step accepted by the gateway and rolling its pods."""
    values = yaml.safe_load((CI_DIR / "canary-in-progress-values.yaml").read_text())
    card_fraud = values["routes"]["decision_points"]["card-fraud"]
    steps: dict[str, Rendered] = {"5%": render(values)}

    card_fraud["canary"]["weight"] = 50
    steps["50%"] = render(values)
    ramped = _card_fraud(steps["50%"], model_dir, tmp_path)
    assert ramped.canary is not None and ramped.canary.weight == 50

    # Promote: v2 becomes champion, v1 stays deployed as the fallback; the canary is gone.
    values["routes"]["aliases"]["card-fraud"] = {"champion": "2", "challenger": "1"}
    del card_fraud["canary"]
    steps["promoted"] = render(values)
    promoted = _card_fraud(steps["promoted"], model_dir, tmp_path)
    assert promoted.primary.version == "2" and promoted.canary is None

    # Roll back from the 5% step: drop the canary; v1 answers everything again.
    rollback = yaml.safe_load((CI_DIR / "canary-in-progress-values.yaml").read_text())
    del rollback["routes"]["decision_points"]["card-fraud"]["canary"]
    steps["rolled back"] = render(rollback)
    rolled_back = _card_fraud(steps["rolled back"], model_dir, tmp_path)
    assert rolled_back.primary.version == "1" and rolled_back.canary is None

    assert len({_checksum(r) for r in steps.values()}) == len(steps)
    runtimes = [r.of_kind("InferenceService") for r in steps.values()]
    assert all(r == runtimes[0] for r in runtimes), "routing changes must not touch the runtimes"
