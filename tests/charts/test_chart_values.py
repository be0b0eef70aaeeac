"""values.yaml and values.schema.json: closed, typed, documented, and in step with the gateway."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import helm_python as helm
import pytest
import yaml
from chart_support import CHART_DIR, render

from gateway.attempts.rules import RulesFileConfig
from gateway.routing.schema import DecisionPointConfig, RoutesConfig

SCHEMA = json.loads((CHART_DIR / "values.schema.json").read_text())


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"gateway": {"replica": 3}}, "replica"),
        ({"runtime": {"models": [{"name": "m", "version": "1", "storageUri": "s3://b/m/1",
                                  "minReplicas": 1, "maxReplicas": 1, "gpu": True}]}}, "gpu"),
        ({"routes": {"decision_points": {"card-fraud": {"canary_weight": 5}}}}, "canary_weight"),
        ({"colour": "red"}, "colour"),
        ({"routes": {"rules": {"card-fraud-rules": {"colour": "red"}}}}, "colour"),
        ({"routes": {"rules": {"card-fraud-rules": {"rules": [
            {"code": "X", "description": "x", "when": {"amount": {"gte": 1}}, "score": 0.5,
             "weight": 2}]}}}}, "weight"),
        ({"routes": {"rules": {"card-fraud-rules": {"rules": [
            {"code": "X", "description": "x", "when": {"amount": {"above": 1}}, "score": 0.5}]}}}},
         "above"),
        ({"gateway": {"outbox": {"sizeLimit": "1Gi"}}}, "sizeLimit"),
    ],
    ids=["gateway-key", "model-entry-key", "decision-point-key", "top-level-key",
         "rules-file-key", "rule-key", "condition-key", "outbox-key"],
)  # fmt: skip
def test_an_unknown_key_fails_the_render(values: dict[str, Any], named: str) -> None:
    with pytest.raises(helm.HelmError, match=named):
        render(values)


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"gateway": {"port": "8090"}}, "port"),
        ({"gateway": {"autoscaling": {"enabled": "yes"}}}, "enabled"),
        ({"runtime": {"models": [{"name": "m", "version": 1, "storageUri": "s3://b/m/1",
                                  "minReplicas": 1, "maxReplicas": 1}]}}, "version"),
        ({"runtime": {"deploymentMode": "Knative"}}, "deploymentMode"),
        ({"routes": {"decision_points": {"card-fraud": {"timeout_ms": 0}}}}, "timeout_ms"),
        ({"podSecurity": {"runAsUser": 0}}, "runAsUser"),
        ({"routes": {"rules": {"card-fraud-rules": {"default_score": 1.5}}}}, "default_score"),
        ({"routes": {"rules": {"routes": {"version": "r", "default_score": 0.1}}}},
         "propertyName 'routes'"),
        ({"routes": {"decision_points": {"card-fraud": {"fallback": {"chain": [
            {"rules": "card-fraud-rules", "model": "card-fraud"}]}}}}}, "fallback/chain/0"),
        ({"gateway": {"outbox": {"volume": {"type": "hostPath"}}}}, "volume/type"),
        ({"gateway": {"outbox": {"segmentBytes": 1024}}}, "segmentBytes"),
        ({"gateway": {"batching": {"maxSize": 5000}}}, "maxSize"),
    ],
    ids=["port-string", "bool-string", "version-int", "mode-enum", "timeout-zero", "root-uid",
         "score-range", "rules-name-routes", "step-both-kinds", "outbox-volume-type",
         "outbox-segment-small", "batch-too-big"],
)  # fmt: skip
def test_a_wrongly_typed_value_fails_the_render(values: dict[str, Any], named: str) -> None:
    with pytest.raises(helm.HelmError, match=named):
        render(values)


def _objects(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        if node.get("type") == "object":
            yield path or "<root>", node
        for key, child in node.items():
            yield from _objects(child, f"{path}.{key}" if path else key)
    elif isinstance(node, list):
        for i, child in enumerate(node):
            yield from _objects(child, f"{path}[{i}]")


def test_the_schema_is_closed_at_every_level() -> None:
    """Records refuse unknown keys; maps (annotations, resources, routes) type every entry."""
    objects = list(_objects(SCHEMA))
    assert len(objects) > 40
    for path, node in objects:
        extra = node.get("additionalProperties")
        if "properties" in node:
            assert extra is False, f"{path}: additionalProperties must be false"
        else:
            assert isinstance(extra, dict) and extra, f"{path}: a map must type its entries"


def _documented_keys(node: yaml.Node, lines: list[str], path: str) -> Iterator[tuple[str, bool]]:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            line = key.start_mark.line
            above = lines[line - 1].strip() if line > 0 else ""
            same_line_as_parent = value.start_mark.line == line and isinstance(
                value, yaml.MappingNode | yaml.SequenceNode
            )
            here = f"{path}.{key.value}" if path else str(key.value)
            yield here, above.startswith("#")
            if same_line_as_parent:
                continue  # flow style: {a: 1, b: 2} is documented by the comment on its key
            yield from _documented_keys(value, lines, here)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            yield from _documented_keys(item, lines, f"{path}[]")


def _is_map_entry(path: str) -> bool:
    node: dict[str, Any] = SCHEMA
    for part in path.replace("[]", ".[]").split("."):
        if part == "[]":
            node = node["items"]
        elif part in node.get("properties", {}):
            node = node["properties"][part]
        else:
            return True
    return False


def test_every_value_is_commented() -> None:
    """Each key of values.yaml has a comment above it at least once (list items repeat keys)."""
    text = (CHART_DIR / "values.yaml").read_text()
    root = yaml.compose(text)
    seen: dict[str, bool] = {}
    for path, commented in _documented_keys(root, text.splitlines(), ""):
        # Entries of maps (resources, aliases, decision points) are documented by the map's
        # own comment: their keys are data, not settings.
        if _is_map_entry(path):
            continue
        seen[path] = seen.get(path, False) or commented
    undocumented = sorted(p for p, ok in seen.items() if not ok)
    assert len(seen) > 80
    assert not undocumented, undocumented


def test_every_default_value_is_in_the_schema() -> None:
    """values.yaml itself validates: no default key the schema forgot."""
    with helm.Chart.load(CHART_DIR) as chart:
        chart.validate_schema(yaml.safe_load((CHART_DIR / "values.yaml").read_text()))


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any] | None:
    """The object schema behind a pydantic field (through $ref, Optional and tuples), if any."""
    if "$ref" in node:
        return _resolve(defs[node["$ref"].rsplit("/", 1)[1]], defs)
    for key in ("anyOf", "allOf"):
        for option in node.get(key, []):
            found = _resolve(option, defs)
            if found is not None:
                return found
    if node.get("type") == "array" and isinstance(node.get("items"), dict):
        return _resolve(node["items"], defs)
    return node if "properties" in node else None


def _mismatches(
    ours: dict[str, Any], theirs: dict[str, Any], defs: dict[str, Any], at: str
) -> Iterator[str]:
    if ours.get("type") == "array":
        ours = ours["items"]
    if set(ours["properties"]) != set(theirs["properties"]):
        yield f"{at}: chart {sorted(ours['properties'])} != gateway {sorted(theirs['properties'])}"
        return
    if set(ours.get("required", [])) != set(theirs.get("required", [])):
        yield f"{at}: required {ours.get('required')} != {theirs.get('required')}"
    for name, field in theirs["properties"].items():
        nested = _resolve(field, defs)
        if nested is not None:
            yield from _mismatches(ours["properties"][name], nested, defs, f"{at}.{name}")


def test_decision_point_schema_follows_the_gateway() -> None:
    """Every key the gateway reads in a decision point is in the chart's schema, and no other:
    when the routing format grows, this names what the chart must add."""
    theirs = DecisionPointConfig.model_json_schema()
    ours = SCHEMA["properties"]["routes"]["properties"]["decision_points"]["additionalProperties"]
    problems = list(_mismatches(ours, theirs, theirs.get("$defs", {}), "decision_points.*"))
    assert not problems, problems


def test_routes_top_level_follows_the_gateway() -> None:
    theirs = RoutesConfig.model_json_schema()
    ours = SCHEMA["properties"]["routes"]["properties"]
    # models come from runtime.models (aliases beside them); rules: see the next test.
    assert set(theirs["properties"]) - {"models"} == set(ours) - {"aliases"}
    breaker = _resolve(theirs["properties"]["circuit_breaker"], theirs["$defs"])
    assert breaker is not None
    assert not list(
        _mismatches(ours["circuit_breaker"], breaker, theirs["$defs"], "circuit_breaker")
    )


def test_rules_file_schema_follows_the_gateway() -> None:
    """routes.rules holds each rules file's content (the chart writes the `file:` entries), so its
    schema must be the gateway's rules-file format, down to each condition's keys."""
    theirs = RulesFileConfig.model_json_schema()
    defs = theirs["$defs"]
    ours = SCHEMA["properties"]["routes"]["properties"]["rules"]["additionalProperties"]
    assert not list(_mismatches(ours, theirs, defs, "rules.*"))
    when = ours["properties"]["rules"]["items"]["properties"]["when"]["additionalProperties"]
    ours_conditions = {
        tuple(sorted(o["properties"])): o for o in when["anyOf"] if o["type"] == "object"
    }
    for name in ("NumberCondition", "CategoryCondition"):
        keys = tuple(sorted(defs[name]["properties"]))
        assert keys in ours_conditions, f"{name}: chart lacks a condition with keys {keys}"
        ours_condition = ours_conditions.pop(keys)
        assert not list(_mismatches(ours_condition, defs[name], defs, f"when.{name}"))
    assert not ours_conditions, f"conditions the gateway does not read: {list(ours_conditions)}"
    scalars = {o["type"] for o in when["anyOf"] if o["type"] != "object"}
    theirs_when = defs["RuleConfig"]["properties"]["when"]["additionalProperties"]["anyOf"]
    assert scalars == {o["type"] for o in theirs_when if "type" in o}
