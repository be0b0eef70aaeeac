"""The routes ConfigMap the chart renders is a config the gateway's own loader accepts."""

from __future__ import annotations

from pathlib import Path

import helm_python as helm
import pytest
import yaml
from chart_support import CHART_DIR, CI_DIR, NAMESPACE, Rendered, render

from gateway.attempts.rules import RulesScorer
from gateway.demo_rules import DEMO_RULES
from gateway.routing.compiled import DecisionPoint, load_routes
from runtimes.manifest import load_manifests


def test_rendered_routes_load_in_the_gateway(
    rendered: Rendered, model_dir: Path, tmp_path: Path
) -> None:
    routes = load_routes(rendered.write_routes(tmp_path), load_manifests(model_dir))
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


def test_fallback_chains_end_in_the_rendered_rules_files(
    rendered: Rendered, model_dir: Path, tmp_path: Path
) -> None:
    """Each `{rules: NAME}` step is the rules file rendered beside routes.yaml, compiled by the
    gateway against the decision point's manifest, at the version values gave it."""
    files = rendered.routes_files()
    config = yaml.safe_load(files["routes.yaml"])
    routes = load_routes(rendered.write_routes(tmp_path), load_manifests(model_dir))
    ending_in_rules = 0
    for name, point in routes.decision_points.items():
        chain = config["decision_points"][name].get("fallback", {}).get("chain", [])
        if not chain or "rules" not in chain[-1]:
            continue
        assert point.fallback is not None
        scorer = point.fallback.chain[-1]
        assert isinstance(scorer, RulesScorer), (rendered.scenario, name)
        content = yaml.safe_load(files[config["rules"][chain[-1]["rules"]]["file"]])
        assert scorer.version == content["version"]
        ending_in_rules += 1
    # Every scenario keeps card-fraud answering from rules when no model can.
    assert ending_in_rules >= 1, rendered.scenario
    # Only what routes.yaml names is rendered: no stray rules file in the ConfigMap.
    assert set(files) == {"routes.yaml"} | {r["file"] for r in config.get("rules", {}).values()}


def test_the_default_rules_are_the_demo_rules() -> None:
    """values.yaml carries gateway/demo_rules/ verbatim (as data): edit both or neither."""
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    rules = values["routes"]["rules"]
    assert set(rules) == {f"{model}-rules" for model in DEMO_RULES}
    for model, path in DEMO_RULES.items():
        assert rules[f"{model}-rules"] == yaml.safe_load(path.read_text()), path.name


def test_a_fallback_to_unknown_rules_fails_the_render() -> None:
    chain = [{"rules": "card-fraud-rules-2"}]
    values = {"routes": {"decision_points": {"card-fraud": {"fallback": {"chain": chain}}}}}
    with pytest.raises(helm.HelmError, match=r"chain\[0\]: rules \"card-fraud-rules-2\" is not in"):
        render(values)


def test_a_rules_change_rolls_the_gateways() -> None:
    values = {"routes": {"rules": {"card-fraud-rules": {"default_score": 0.06}}}}
    assert _checksum(render(values)) != _checksum(render({}))


def test_canary_scenario_routes_champion_and_challenger(
    renders: dict[str, Rendered], model_dir: Path, tmp_path: Path
) -> None:
    path = renders["canary-in-progress"].write_routes(tmp_path)
    point = load_routes(path, load_manifests(model_dir)).decision_points["card-fraud"]
    assert point.primary.version == "1"
    assert set(point.versions) == {"1", "2"}


def _card_fraud(rendered: Rendered, model_dir: Path, tmp_path: Path) -> DecisionPoint:
    path = rendered.write_routes(tmp_path / str(len(list(tmp_path.iterdir()))))
    return load_routes(path, load_manifests(model_dir)).decision_points["card-fraud"]


def _checksum(rendered: Rendered) -> str:
    template = rendered.component("Deployment", "gateway")["spec"]["template"]
    return str(template["metadata"]["annotations"]["checksum/config"])


def test_ramp_promotion_and_rollback_are_values_changes(model_dir: Path, tmp_path: Path) -> None:
    """docs/operations.md's canary procedure: each step accepted by the gateway, rolling pods."""
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
