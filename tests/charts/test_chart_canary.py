"""The chart's canary controller: a Job (or CronJob) running ``scoregate canary run`` on the
plan from its ConfigMap, with a ServiceAccount that may only get and patch the routes ConfigMap."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
import yaml
from chart_support import (
    KUBERNETES_VERSION,
    NAMESPACE,
    Obj,
    Rendered,
    load_values,
    render,
    scenario_files,
)

from gateway.canary.plan import parse_plan
from governance import access_rules

PLAN: dict[str, Any] = {
    "decision_point": "card-fraud",
    "candidate": {"model": "card-fraud", "version": "2"},
    "steps": [1, 5, 25, 50, 100],
    "dwell_s": 900,
    "min_decisions": 2000,
}


def _render(**canary: Any) -> Rendered:
    return render({"canary": {"plan": PLAN, **canary}})


def _validate(obj: Obj) -> None:
    kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_no_canary_object_by_default() -> None:
    rendered = render({})
    assert not [o for o in rendered.objects if "canary" in o["metadata"]["name"]]


def test_the_job_runs_the_plan_against_the_routes_configmap() -> None:
    rendered = _render(job={"enabled": True}, lineageTokenSecret="canary-token",
                       lineageTlsSecret="canary-tls")  # fmt: skip
    (job,) = rendered.of_kind("Job")
    objects = [o for o in rendered.objects if "canary" in o["metadata"]["name"]]
    assert {o["kind"] for o in objects} == {
        "ConfigMap", "ServiceAccount", "Role", "RoleBinding", "Job", "NetworkPolicy"
    }  # fmt: skip
    for obj in objects:
        _validate(obj)
    pod = job["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    args = c["args"]
    assert c["command"] == ["scoregate"] and args[:2] == ["canary", "run"]
    routes = rendered.component("ConfigMap", "gateway")["metadata"]["name"]
    assert args[args.index("--routes-configmap") + 1] == f"{NAMESPACE}/{routes}"
    assert args[args.index("--lineage-token-file") + 1] == "/etc/scoregate/canary-token/token"
    # The plan the Job mounts is the plan of the values, and the controller accepts it.
    plan_cm = rendered.get("ConfigMap", job["metadata"]["name"].rsplit("-", 1)[0] + "-plan")
    text = plan_cm["data"]["plan.yaml"]
    assert yaml.safe_load(text) == PLAN
    parse_plan(text, "plan.yaml")
    assert (
        pod["serviceAccountName"]
        == rendered.component("ServiceAccount", "canary")["metadata"]["name"]
    )
    assert job["spec"]["backoffLimit"] == 0


def test_the_network_policies_let_the_controller_reach_the_store_and_the_api_server() -> None:
    """Under the chart's default-deny policy the Job would otherwise reach neither."""
    rendered = _render(job={"enabled": True})
    (job,) = rendered.of_kind("Job")
    labels = job["spec"]["template"]["metadata"]["labels"]
    policies = {p["metadata"]["name"]: p["spec"] for p in rendered.of_kind("NetworkPolicy")}
    (mine,) = [
        p
        for p in policies.values()
        if p["podSelector"]["matchLabels"].items() <= labels.items()
        and "egress" in p
        and p["podSelector"]["matchLabels"].get("app.kubernetes.io/component")
    ]
    ports = {port["port"] for rule in mine["egress"] for port in rule["ports"]}
    assert ports == {4317, 443, 6443}
    assert mine["ingress"] == []
    lineage = next(p for name, p in policies.items() if name.endswith("-lineage"))
    peers = [peer for rule in lineage["ingress"] for peer in rule.get("from", [])]
    assert any(
        peer.get("podSelector", {}).get("matchLabels", {}).items() <= labels.items()
        and peer["podSelector"]["matchLabels"].get("app.kubernetes.io/component") == "canary"
        for peer in peers
    )
    # Without a Job or CronJob, the store admits no canary pods.
    plain = {p["metadata"]["name"]: p["spec"] for p in render({}).of_kind("NetworkPolicy")}
    assert not [n for n in plain if n.endswith("-canary")]


def test_the_role_may_only_get_and_patch_the_routes_configmap() -> None:
    rendered = _render(job={"enabled": True})
    role = rendered.component("Role", "canary")
    routes = rendered.component("ConfigMap", "gateway")["metadata"]["name"]
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "resourceNames": [routes],
            "verbs": ["get", "patch"],
        }
    ]
    binding = rendered.component("RoleBinding", "canary")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    sa = rendered.component("ServiceAccount", "canary")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": NAMESPACE}
    ]


def test_a_new_plan_is_a_new_job() -> None:
    first = _render(job={"enabled": True}).of_kind("Job")[0]["metadata"]["name"]
    again = _render(job={"enabled": True}).of_kind("Job")[0]["metadata"]["name"]
    other = render(
        {"canary": {"plan": {**PLAN, "dwell_s": 600}, "job": {"enabled": True}}}
    ).of_kind("Job")[0]["metadata"]["name"]
    assert first == again != other


def test_the_cronjob_is_off_by_default_and_forbids_overlapping_runs() -> None:
    assert not _render(job={"enabled": True}).of_kind("CronJob")
    rendered = _render(cronJob={"enabled": True, "schedule": "0 7 * * 1-5"})
    (cron,) = rendered.of_kind("CronJob")
    _validate(cron)
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    assert not rendered.of_kind("Job")


def test_a_job_without_a_plan_fails_the_render() -> None:
    with pytest.raises(Exception, match=r"needs canary\.plan"):
        render({"canary": {"job": {"enabled": True}}})


def test_secured_the_controller_reaches_the_store_with_its_own_granted_certificate() -> None:
    """Once secured the store requires client certificates: the Job presents one issued for its
    service account, and the policy grants exactly what it calls (CompareArms and
    ListRouteChanges read decisions; each step is a route change)."""
    values = load_values(scenario_files()["production"])
    rendered = render({**values, "canary": {"plan": PLAN, "job": {"enabled": True}}})
    (job,) = rendered.of_kind("Job")
    pod = job["spec"]["template"]["spec"]
    args = pod["containers"][0]["args"]
    secret = next(v for v in pod["volumes"] if v["name"] == "lineage-tls")["secret"]["secretName"]
    cert = next(c for c in rendered.of_kind("Certificate") if c["spec"]["secretName"] == secret)
    assert "client auth" in cert["spec"]["usages"]
    (principal,) = cert["spec"]["uris"]
    assert principal.endswith(f"/ns/{NAMESPACE}/sa/{pod['serviceAccountName']}")
    for flag, file in (
        ("--lineage-ca-file", "ca.crt"),
        ("--lineage-cert-file", "tls.crt"),
        ("--lineage-key-file", "tls.key"),
    ):
        assert args[args.index(flag) + 1] == f"/etc/scoregate/canary-tls/{file}"
    policy = yaml.safe_load(rendered.component("ConfigMap", "access-policy")["data"]["policy.yaml"])
    grants = [g for g in policy["lineage"] if principal in g["principals"]]
    assert [sorted(g["permissions"]) for g in grants] == [
        ["read_decisions", "record_route_changes"]
    ]
    # What the controller calls needs no more (governance/access_rules.py).
    rules = {r.name: r.permission.value for r in access_rules._RULES}
    calls = ("CompareArms", "GetServingAt", "ListRouteChanges", "RecordRouteChange")
    assert {rules[c] for c in calls} == {"read_decisions", "record_route_changes"}
