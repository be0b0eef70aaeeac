"""The chart's PrometheusRule: a valid operator object, rules promtool accepts, thresholds and
durations from values, and each alert firing (and not firing) on series named like the real
metrics (``promtool test rules``).

The Prometheus Operator's CRDs are not among the reference schemas beside the checkout, so its
objects are checked against the minimal closed schemas below, written from the operator's
``monitoring.coreos.com/v1`` API reference (PrometheusRule, ServiceMonitor): the fields the
chart sets, each required one present, nothing misspelt. Replace them with the CRDs' own
schemas (``crd_schemas``) once those are vendored beside the KServe ones.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from chart_support import RELEASE, Obj, Rendered, render
from support.prometheus import promtool, write_rule_file

_STR = {"type": "string", "minLength": 1}
_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_DURATION = {"type": "string", "pattern": "^(0|(([0-9]+)(y|w|d|h|m|s|ms))+)$"}


def _closed(required: list[str], **properties: Any) -> Obj:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": required,
        "properties": properties,
    }


def _resource(kind: str, spec: Obj) -> Obj:
    return _closed(
        ["apiVersion", "kind", "metadata", "spec"],
        apiVersion={"const": "monitoring.coreos.com/v1"},
        kind={"const": kind},
        metadata={"type": "object", "required": ["name"]},
        spec=spec,
    )


_RULE = {
    **_closed(
        ["expr"],
        alert=_STR,
        record=_STR,
        expr={"anyOf": [{"type": "string", "minLength": 1}, {"type": "integer"}]},
        labels=_MAP,
        annotations=_MAP,
        keep_firing_for=_DURATION,
        **{"for": _DURATION},
    ),
    "oneOf": [{"required": ["alert"]}, {"required": ["record"]}],
}

OPERATOR_SCHEMAS: dict[str, Obj] = {
    "PrometheusRule": _resource(
        "PrometheusRule",
        _closed(
            ["groups"],
            groups={
                "type": "array",
                "items": _closed(
                    ["name", "rules"],
                    name=_STR,
                    interval=_DURATION,
                    limit={"type": "integer"},
                    partial_response_strategy={"type": "string"},
                    rules={"type": "array", "items": _RULE},
                ),
            },
        ),
    ),
    "ServiceMonitor": _resource(
        "ServiceMonitor",
        _closed(
            ["selector", "endpoints"],
            selector=_closed(["matchLabels"], matchLabels=_MAP),
            endpoints={
                "type": "array",
                "minItems": 1,
                "items": _closed(["port"], port=_STR, path=_STR, interval=_DURATION, scheme=_STR),
            },
        ),
    ),
}

ALERTS = {
    "ScoregateScorePsiHigh",
    "ScoregateFeaturePsiHigh",
    "ScoregateMissingValueSpike",
    "ScoregateFallbackShareHigh",
    "ScoregateGatewayErrorRateHigh",
    "ScoregateOutboxBacklog",
    "ScoregateChainVerificationFailed",
}


def _with_rules(**rule_values: Any) -> dict[str, Any]:
    return {"metrics": {"prometheusRule": {"enabled": True, **rule_values}}}


@pytest.fixture(scope="module")
def alerting() -> Rendered:
    return render(_with_rules(), "alerts")


def _rule_object(rendered: Rendered) -> Obj:
    (rule,) = rendered.of_kind("PrometheusRule")
    return rule


def _rules(rendered: Rendered) -> dict[str, Obj]:
    groups = _rule_object(rendered)["spec"]["groups"]
    return {r["alert"]: r for g in groups for r in g["rules"]}


def _errors(obj: Obj) -> list[str]:
    schema = OPERATOR_SCHEMAS[obj["kind"]]
    return [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
        for e in jsonschema.Draft7Validator(schema).iter_errors(obj)
    ]


def test_operator_objects_validate_against_their_schemas(
    rendered: Rendered, alerting: Rendered
) -> None:
    checked = 0
    for r in (rendered, alerting):
        for obj in r.objects:
            if obj["apiVersion"] == "monitoring.coreos.com/v1":
                assert not _errors(obj), (r.scenario, obj["kind"], _errors(obj))
                checked += 1
    assert checked >= 1


def test_the_operator_schema_refuses_a_misspelt_field(alerting: Rendered) -> None:
    rule = copy.deepcopy(_rule_object(alerting))
    rule["spec"]["groups"][0]["rules"][0]["expression"] = "up"
    assert any("expression" in e for e in _errors(rule))


def test_the_rule_is_rendered_only_when_asked(renders: dict[str, Rendered]) -> None:
    assert not renders["default"].of_kind("PrometheusRule")
    prod = _rule_object(renders["production"])
    assert prod["metadata"]["name"] == f"{RELEASE}-alerts"
    assert prod["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    # Both components are scraped: the store's drift and chain, the gateway's traffic.
    monitors = {m["metadata"]["name"] for m in renders["production"].of_kind("ServiceMonitor")}
    assert monitors == {f"{RELEASE}-gateway", f"{RELEASE}-lineage"}
    service = renders["production"].component("Service", "lineage")
    assert "metrics" in {p["name"] for p in service["spec"]["ports"]}


def test_every_alert_has_severity_summary_and_a_runbook(alerting: Rendered) -> None:
    rules = _rules(alerting)
    assert set(rules) == ALERTS
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        assert rule["annotations"]["summary"], name
        description = rule["annotations"]["description"]
        assert "Check:" in description and "Act:" in description, name


def test_promtool_accepts_the_rendered_rules(
    alerting: Rendered, renders: dict[str, Rendered], tmp_path: Path
) -> None:
    for r in (alerting, renders["production"]):
        rules = write_rule_file(tmp_path / f"{r.scenario}.yaml", _rule_object(r))
        checked = promtool("check", "rules", str(rules))
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert f"SUCCESS: {len(ALERTS)} rules found" in checked.stdout


def test_promtool_refuses_a_broken_expression(alerting: Rendered, tmp_path: Path) -> None:
    """The check can fail: a rule whose PromQL does not parse is refused."""
    rule = copy.deepcopy(_rule_object(alerting))
    rule["spec"]["groups"][0]["rules"][0]["expr"] = "scoregate_lineage_drift_psi >"
    checked = promtool("check", "rules", str(write_rule_file(tmp_path / "broken.yaml", rule)))
    assert checked.returncode != 0


def test_thresholds_windows_and_durations_come_from_values() -> None:
    rules = _rules(
        render(
            _with_rules(
                minDecisions=40,
                scorePsi={"threshold": 0.4, "window": "1h", "for": "2h", "severity": "critical"},
                errorRate={"codes": ["INTERNAL"], "threshold": 0.2, "rateWindow": "15m",
                           "for": "1m", "severity": "warning"},
            )
        )
    )  # fmt: skip
    score = rules["ScoregateScorePsiHigh"]
    assert 'window="1h"} > 0.4' in score["expr"] and ">= 40" in score["expr"]
    assert (score["for"], score["labels"]["severity"]) == ("2h", "critical")
    errors = rules["ScoregateGatewayErrorRateHigh"]
    assert 'outcome=~"INTERNAL"}[15m]' in errors["expr"] and "> 0.2" in errors["expr"]
    # A value the schema does not know is refused, not ignored.
    with pytest.raises(Exception, match="threshhold"):
        render(_with_rules(featurePsi={"threshhold": 0.3}))


def _series(family: str, values: str, **labels: str) -> dict[str, str]:
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{family}{{{inner}}}", "values": values}


ARM = {"decision_point": "credit-risk", "model": "credit-risk", "version": "2", "arm": "canary"}
DAY = {**ARM, "window": "24h"}
HOUR = {**ARM, "window": "1h"}


def _unit_tests(rules: dict[str, Obj]) -> list[dict[str, Any]]:
    """Each alert at the chart's default thresholds and durations: not yet at half its ``for``,
    firing after it, and held back where its guard says (too few decisions, a healthy share).
    Descriptions are the rendered ones (they hold no Prometheus template); summaries are
    spelled out, so a broken template shows here."""

    def fired(alert: str, summary: str, **labels: str) -> dict[str, Any]:
        return {
            "exp_labels": {"severity": rules[alert]["labels"]["severity"], **labels},
            "exp_annotations": {
                "summary": summary,
                "description": rules[alert]["annotations"]["description"],
            },
        }

    def at(minutes: int, alert: str, *expected: dict[str, Any]) -> dict[str, Any]:
        return {"eval_time": f"{minutes}m", "alertname": alert, "exp_alerts": list(expected)}

    requests = "scoregate_gateway_requests_total"
    return [
        {
            "name": "score and feature PSI, guarded by the window's decisions",
            "interval": "1m",
            "input_series": [
                _series("scoregate_lineage_drift_psi", "0.31x60", **DAY, measure="score"),
                _series("scoregate_lineage_drift_psi", "0.52x60", **DAY, measure="debt_to_income"),
                _series("scoregate_lineage_drift_psi", "0.05x60", **DAY, measure="age"),
                _series("scoregate_lineage_window_decisions", "900x60", **DAY),
                # A second arm past the threshold on 80 decisions: noise, not drift.
                _series("scoregate_lineage_drift_psi", "0.9x60", **{**DAY, "arm": "shadow"},
                        measure="score"),
                _series("scoregate_lineage_window_decisions", "80x60", **{**DAY, "arm": "shadow"}),
            ],
            "alert_rule_test": [
                at(15, "ScoregateScorePsiHigh"),
                at(40, "ScoregateScorePsiHigh", fired(
                    "ScoregateScorePsiHigh",
                    "credit-risk: the score of credit-risk v2 (canary) has shifted from "
                    "training, PSI 0.31",
                    **DAY, measure="score")),
                at(40, "ScoregateFeaturePsiHigh", fired(
                    "ScoregateFeaturePsiHigh",
                    "credit-risk: feature debt_to_income of credit-risk v2 (canary) has shifted "
                    "from training, PSI 0.52",
                    **DAY, measure="debt_to_income")),
            ],
        },
        {
            "name": "missing values against the training share",
            "interval": "1m",
            "input_series": [
                _series("scoregate_lineage_missing_share", "0.35x40", **HOUR, measure="age"),
                _series("scoregate_lineage_baseline_missing_share", "0.05x40", **HOUR,
                        measure="age"),
                # Missing as often as in training: no spike.
                _series("scoregate_lineage_missing_share", "0.30x40", **HOUR, measure="income"),
                _series("scoregate_lineage_baseline_missing_share", "0.28x40", **HOUR,
                        measure="income"),
                _series("scoregate_lineage_window_decisions", "700x40", **HOUR),
            ],
            "alert_rule_test": [
                at(5, "ScoregateMissingValueSpike"),
                at(20, "ScoregateMissingValueSpike", fired(
                    "ScoregateMissingValueSpike",
                    "credit-risk: feature age is missing far more often than in training (+30%)",
                    **HOUR, measure="age")),
            ],
        },
        {
            "name": "fallback share and error rate per decision point",
            "interval": "1m",
            "input_series": [
                # card-fraud: 100 decisions a minute, 20 of them fallbacks, 5 failed calls.
                _series(requests, "0+75x40", decision_point="card-fraud", arm="primary",
                        model_version="1", outcome="approve"),
                _series(requests, "0+20x40", decision_point="card-fraud", arm="fallback",
                        model_version="rules-1", outcome="review"),
                _series(requests, "0+5x40", decision_point="card-fraud", arm="", model_version="",
                        outcome="UNAVAILABLE"),
                _series("scoregate_gateway_fallbacks_total", "0+20x40",
                        decision_point="card-fraud", reason="timeout"),
                # churn: client mistakes only, which are not errors.
                _series(requests, "0+100x40", decision_point="churn", arm="primary",
                        model_version="1", outcome="approve"),
                _series(requests, "0+30x40", decision_point="churn", arm="", model_version="",
                        outcome="INVALID_ARGUMENT"),
            ],
            "alert_rule_test": [
                at(8, "ScoregateFallbackShareHigh"),
                at(20, "ScoregateFallbackShareHigh", fired(
                    "ScoregateFallbackShareHigh",
                    "card-fraud: 20% of decisions come from the fallback chain",
                    decision_point="card-fraud")),
                at(3, "ScoregateGatewayErrorRateHigh"),
                at(20, "ScoregateGatewayErrorRateHigh", fired(
                    "ScoregateGatewayErrorRateHigh",
                    "card-fraud: 5% of Score calls fail",
                    decision_point="card-fraud")),
            ],
        },
        {
            "name": "outbox backlog and the chain",
            "interval": "1m",
            "input_series": [
                _series("scoregate_outbox_oldest_unacked_age_seconds", "0+60x20", pod="gw-1"),
                _series("scoregate_outbox_oldest_unacked_age_seconds", "0x20", pod="gw-2"),
                _series("scoregate_lineage_chain_verify_ok", "1x5 0x5", job="lineage"),
            ],
            "alert_rule_test": [
                # Older than 300 s from minute 6 on, for 5 minutes: fires at 11.
                at(9, "ScoregateOutboxBacklog"),
                at(12, "ScoregateOutboxBacklog", fired(
                    "ScoregateOutboxBacklog",
                    "A gateway's outbox holds decision records unacknowledged for 12m 0s",
                    pod="gw-1")),
                at(4, "ScoregateChainVerificationFailed"),
                at(7, "ScoregateChainVerificationFailed", fired(
                    "ScoregateChainVerificationFailed",
                    "The lineage store's hash chain does not verify: a stored record may have "
                    "been altered",
                    job="lineage")),
            ],
        },
    ]  # fmt: skip


def test_promtool_unit_tests_of_every_alert(alerting: Rendered, tmp_path: Path) -> None:
    rules = _rules(alerting)
    write_rule_file(tmp_path / "rules.yaml", _rule_object(alerting))
    tests = _unit_tests(rules)
    tested = {t["alertname"] for group in tests for t in group["alert_rule_test"]}
    assert tested == ALERTS
    (tmp_path / "rules_test.yaml").write_text(
        yaml.safe_dump(
            {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": tests},
            sort_keys=False,
        )
    )
    result = promtool("test", "rules", "rules_test.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
