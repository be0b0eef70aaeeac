"""What an SRE relies on beyond schemas: KServe wiring, drain, scaling, network flows, NOTES."""

from __future__ import annotations

import copy
import json
import re

import helm_python as helm
import pytest
import yaml
from chart_support import CHART_DIR, NAMESPACE, RELEASE, Obj, Rendered, container, render


def test_servingruntime_exposes_grpc_the_kserve_way(rendered: Rendered) -> None:
    runtimes = rendered.of_kind("ServingRuntime") + rendered.of_kind("ClusterServingRuntime")
    assert len(runtimes) == 1
    spec = runtimes[0]["spec"]
    assert {f["name"] for f in spec["supportedModelFormats"]} == {"onnx"}
    assert set(spec["protocolVersions"]) == {"v2", "grpc-v2"}
    (c,) = spec["containers"]
    assert c["name"] == "kserve-container"
    # Knative and KServe route HTTP/2 to the single port named h2c.
    assert c["ports"] == [{"name": "h2c", "containerPort": 8081, "protocol": "TCP"}]
    args = c["args"]
    assert args[args.index("--grpc-port") + 1] == "8081"
    assert args[args.index("--http-port") + 1] == "8080"
    assert args[args.index("--model-dir") + 1] == "/mnt/models"


def test_one_inferenceservice_per_model_version(rendered: Rendered) -> None:
    models = (rendered.values.get("runtime") or {}).get("models")
    if not models:  # the chart's default models
        models = yaml.safe_load((CHART_DIR / "values.yaml").read_text())["runtime"]["models"]
    expected = len(models)
    isvcs = rendered.of_kind("InferenceService")
    assert len(isvcs) == expected
    mode = (rendered.values.get("runtime") or {}).get("deploymentMode", "RawDeployment")
    for isvc in isvcs:
        assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == mode
        model = isvc["spec"]["predictor"]["model"]
        assert model["modelFormat"] == {"name": "onnx"}
        assert model["protocolVersion"] == "grpc-v2"
        assert model["storageUri"]


def _arg(c: Obj, flag: str, default: float) -> float:
    args = c["args"]
    return float(args[args.index(flag) + 1]) if flag in args else default


def test_gateway_drains_before_it_is_killed(rendered: Rendered) -> None:
    deployment = rendered.component("Deployment", "gateway")
    pod = deployment["spec"]["template"]["spec"]
    c = container(rendered, "Deployment", "gateway", "gateway")
    drain = float(c["args"][c["args"].index("--grace-s") + 1])
    sleep = c["lifecycle"]["preStop"]["sleep"]["seconds"]
    # The outbox delivers its backlog after the calls have drained, before the process exits.
    outbox_drain = _arg(c, "--outbox-drain-s", 0.0)
    assert "--outbox-dir" not in c["args"] or "--outbox-drain-s" in c["args"]
    assert pod["terminationGracePeriodSeconds"] > sleep + drain + outbox_drain
    port = int(c["args"][c["args"].index("--port") + 1])
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert _probe_port(c[probe]) == port, probe
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert re.fullmatch(r"[0-9a-f]{64}", annotations["checksum/config"])


def test_lineage_probes_and_storage(rendered: Rendered) -> None:
    sts = rendered.component("StatefulSet", "lineage")
    c = container(rendered, "StatefulSet", "lineage", "lineage")
    port = int(c["args"][c["args"].index("--port") + 1])
    assert _probe_port(c["readinessProbe"]) == port
    database = ((rendered.values.get("lineage") or {}).get("database") or {}).get("type", "sqlite")
    claims = [t["metadata"]["name"] for t in sts["spec"].get("volumeClaimTemplates", [])]
    assert sts["spec"]["replicas"] == 1
    if database == "sqlite":
        assert "sqlite:////var/lib/scoregate/lineage.db" in c["args"]
        assert claims[0] == "data"
    else:
        assert "--db-url" not in c["args"]
        (url,) = [e for e in c["env"] if e["name"] == "SCOREGATE_LINEAGE_DB_URL"]
        assert url["valueFrom"]["secretKeyRef"]["name"]
        assert "data" not in claims
        assert all("valueFrom" not in e for e in c["env"] if e is not url)


def test_checkpoints_go_to_their_own_volume_and_retention_to_the_store(
    rendered: Rendered,
) -> None:
    sts = rendered.component("StatefulSet", "lineage")
    c = container(rendered, "StatefulSet", "lineage", "lineage")
    path = c["args"][c["args"].index("--checkpoint-file") + 1]
    (mount,) = [m for m in c["volumeMounts"] if path.startswith(m["mountPath"] + "/")]
    assert mount["name"] == "checkpoints" and not mount.get("readOnly")
    claims = {t["metadata"]["name"]: t for t in sts["spec"]["volumeClaimTemplates"]}
    assert "checkpoints" in claims
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["SCOREGATE_LINEAGE_CHECKPOINT_FILE"] == path
    lineage = rendered.values.get("lineage") or {}
    months = (lineage.get("retention") or {}).get("months", 25)
    assert env["SCOREGATE_LINEAGE_RETENTION_MONTHS"] == str(months)
    interval = c["args"][c["args"].index("--checkpoint-interval") + 1]
    assert float(interval) > 0


def test_the_gateway_records_route_changes_in_the_lineage_store(rendered: Rendered) -> None:
    c = container(rendered, "Deployment", "gateway", "gateway")
    endpoint = c["args"][c["args"].index("--lineage-endpoint") + 1]
    service = rendered.component("Service", "lineage")
    port = service["spec"]["ports"][0]["port"]
    assert endpoint == f"{RELEASE}-lineage.{NAMESPACE}.svc.cluster.local:{port}"


def test_purge_cronjob_runs_against_postgresql_only(renders: dict[str, Rendered]) -> None:
    prod = renders["production"]
    (cronjob,) = prod.of_kind("CronJob")
    spec = cronjob["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["schedule"] == prod.values["lineage"]["retention"]["purge"]["schedule"]
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and pod["automountServiceAccountToken"] is False
    (c,) = pod["containers"]
    assert c["command"] == ["scoregate"] and c["args"][:2] == ["lineage", "purge"]
    months = c["args"][c["args"].index("--retention-months") + 1]
    assert months == str(prod.values["lineage"]["retention"]["months"])
    (url,) = c["env"]
    assert url["valueFrom"]["secretKeyRef"]["name"] == "scoregate-lineage-db"
    # Its pod reaches PostgreSQL and nothing else.
    egress = _policy(prod, "purge")["spec"]["egress"]
    assert [p["port"] for r in egress for p in r["ports"]] == [5432]
    for name, r in renders.items():
        if name != "production":
            assert not r.of_kind("CronJob"), name
    with pytest.raises(helm.HelmError, match=r"needs lineage\.database\.type postgresql"):
        render({"lineage": {"retention": {"purge": {"enabled": True}}}})


def test_production_scales_and_survives_disruption(renders: dict[str, Rendered]) -> None:
    prod = renders["production"]
    hpa = prod.component("HorizontalPodAutoscaler", "gateway")
    assert hpa["spec"]["scaleTargetRef"]["name"] == f"{RELEASE}-gateway"
    assert hpa["spec"]["minReplicas"] >= 2
    assert "replicas" not in prod.component("Deployment", "gateway")["spec"]
    pdb = prod.component("PodDisruptionBudget", "gateway")
    assert pdb["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "gateway"
    spread = prod.component("Deployment", "gateway")["spec"]["template"]["spec"][
        "topologySpreadConstraints"
    ]
    assert {s["topologyKey"] for s in spread} == {
        "topology.kubernetes.io/zone",
        "kubernetes.io/hostname",
    }
    assert not renders["default"].of_kind("HorizontalPodAutoscaler")
    assert not renders["minimal"].of_kind("PodDisruptionBudget")


def _policy(rendered: Rendered, component: str) -> Obj:
    return rendered.get("NetworkPolicy", f"{RELEASE}-{component}")


def _selects(peer: Obj, component: str) -> bool:
    labels = peer.get("podSelector", {}).get("matchLabels", {})
    return bool(labels.get("app.kubernetes.io/component") == component)


def test_network_policies_deny_by_default_and_allow_the_flows(rendered: Rendered) -> None:
    deny = _policy(rendered, "default-deny")
    assert set(deny["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny["spec"]
    assert {p["port"] for r in deny["spec"]["egress"] for p in r["ports"]} == {53}
    collector = (rendered.values.get("collector") or {}).get("enabled", False)

    gateway = _policy(rendered, "gateway")["spec"]
    assert any(_selects(peer, "runtime") for r in gateway["egress"] for peer in r.get("to", []))
    # Route changes always go to the lineage store; decision spans to the collector if any.
    sinks = {"lineage", "collector"} if collector else {"lineage"}
    for sink in sinks:
        assert any(_selects(peer, sink) for r in gateway["egress"] for peer in r.get("to", []))

    runtime = _policy(rendered, "runtime")["spec"]
    assert any(_selects(peer, "gateway") for r in runtime["ingress"] for peer in r["from"])

    lineage = _policy(rendered, "lineage")["spec"]
    rule, *others = lineage["ingress"]
    # With ServiceMonitors, Prometheus may reach the store's metrics port from anywhere; no
    # other port of the store is open to every source.
    monitored = rendered.values.get("metrics", {}).get("serviceMonitor", {}).get("enabled", False)
    open_to_all = [p["port"] for r in others if "from" not in r for p in r["ports"]]
    assert open_to_all == ([9465] if monitored else [])
    assert _selects(rule["from"][0], "gateway")
    # The collector forwards decision spans only when the gateway has no outbox (which then
    # delivers the records to the lineage store itself).
    outbox = "--outbox-dir" in container(rendered, "Deployment", "gateway", "gateway")["args"]
    forwards = collector and not outbox
    assert forwards == any(_selects(peer, "collector") for peer in rule["from"])
    if collector:
        egress = _policy(rendered, "collector")["spec"]["egress"]
        peers = [peer for r in egress for peer in r.get("to", [])]
        assert forwards == any(_selects(peer, "lineage") for peer in peers)
    assert not any(_selects(peer, "runtime") for peer in rule["from"])


def test_production_restricts_callers(renders: dict[str, Rendered]) -> None:
    ingress = _policy(renders["production"], "gateway")["spec"]["ingress"][0]
    namespaces = [
        p["namespaceSelector"]["matchLabels"] for p in ingress["from"] if "namespaceSelector" in p
    ]
    assert namespaces == [{"kubernetes.io/metadata.name": "core-banking"}]
    assert any(_selects(p, "test") for p in ingress["from"]), (
        "helm test must still reach the gateway"
    )


def _redacted_keys(config: Obj) -> set[str]:
    return {
        a["key"]
        for p in config["service"]["pipelines"]["traces/redacted"]["processors"]
        for a in config["processors"][p].get("actions", [])
        if a["action"] == "delete"
    }


def test_with_the_outbox_the_collector_carries_only_redacted_tracing(
    renders: dict[str, Rendered],
) -> None:
    """Production runs the outbox: decision records go from the gateway's outbox to the lineage
    store, and the collector has no path to it (its spans carry no record)."""
    prod = renders["production"]
    c = container(prod, "Deployment", "gateway", "gateway")
    assert "--outbox-dir" in c["args"]
    assert c["args"][c["args"].index("--otlp-endpoint") + 1].startswith(f"{RELEASE}-collector.")
    config = yaml.safe_load(prod.component("ConfigMap", "collector")["data"]["config.yaml"])
    assert set(config["service"]["pipelines"]) == {"traces/redacted"}
    assert set(config["exporters"]) == {"otlp/tracing"}
    assert config["service"]["extensions"] == ["health_check"]  # no lineage sending queue
    collector = prod.component("Deployment", "collector")["spec"]["template"]["spec"]
    assert [v["name"] for v in collector["volumes"]] == ["config"]
    assert "scoregate.decision.record" in _redacted_keys(config)


def test_with_the_outbox_a_collector_needs_a_tracing_endpoint() -> None:
    values = {"collector": {"enabled": True}}
    with pytest.raises(helm.HelmError, match=r"collector\.tracing\.endpoint"):
        render(values)
    render({**values, "gateway": {"outbox": {"enabled": False}}})


def test_collector_keeps_decisions_and_redacts_traces(renders: dict[str, Rendered]) -> None:
    """Without the outbox the collector forwards every decision span to the lineage store."""
    values = copy.deepcopy(renders["production"].values)
    values["gateway"]["outbox"] = {"enabled": False}
    # The collector cannot reach a TLS store (test_chart_transport_security.py): demo mode here.
    values["security"]["insecureDemo"] = True
    prod = render(values)
    config = yaml.safe_load(prod.component("ConfigMap", "collector")["data"]["config.yaml"])
    pipelines = config["service"]["pipelines"]
    lineage = pipelines["traces/lineage"]
    assert not any("sampl" in p for p in lineage["processors"])
    exporter = config["exporters"][lineage["exporters"][0]]
    assert exporter["endpoint"] == f"{RELEASE}-lineage.{NAMESPACE}.svc.cluster.local:4317"
    assert exporter["sending_queue"]["storage"] in config["service"]["extensions"]
    # The record attribute holds the features and the entity key.
    assert "scoregate.decision.record" in _redacted_keys(config)
    c = container(prod, "Deployment", "gateway", "gateway")
    assert c["args"][c["args"].index("--otlp-endpoint") + 1].startswith(f"{RELEASE}-collector.")


def test_monitoring_objects(renders: dict[str, Rendered]) -> None:
    prod = renders["production"]
    monitor = prod.component("ServiceMonitor", "gateway")
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    service_ports = {p["name"] for p in prod.component("Service", "gateway")["spec"]["ports"]}
    assert "metrics" in service_ports
    dashboard = json.loads(prod.component("ConfigMap", "dashboard")["data"]["scoregate.json"])
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in ("request", "latency", "fallback", "canary", "circuit"):
        assert topic in titles, topic
    assert not renders["default"].of_kind("ServiceMonitor")


def test_helm_test_pod_checks_health_then_scores(rendered: Rendered) -> None:
    (pod,) = rendered.of_kind("Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    gateway_port = rendered.component("Service", "gateway")["spec"]["ports"][0]["port"]
    target = f"{RELEASE}-gateway:{gateway_port}"
    (health,) = pod["spec"]["initContainers"]
    assert target in health["args"][0] and "grpc.health.v1.Health/Check" in health["args"][0]
    (score,) = pod["spec"]["containers"]
    assert score["args"][-2:] == [target, "scoring.v1.ScoringService/Score"]


def test_notes_name_the_gateway_port_from_values() -> None:
    rendered = render({"gateway": {"port": 9443}})
    assert f"{RELEASE}-gateway.{NAMESPACE}.svc.cluster.local:9443" in rendered.notes
    assert "port-forward service/scoregate-gateway 9443:9443" in rendered.notes
    assert "localhost:9443 scoring.v1.ScoringService/Score" in rendered.notes
    c = container(rendered, "Deployment", "gateway", "gateway")
    assert c["ports"][0]["containerPort"] == 9443
    assert "no spans are exported" in rendered.notes  # outbox on, no collector


def test_notes_say_where_decisions_go() -> None:
    off = render({"gateway": {"outbox": {"enabled": False}}}).notes
    assert f"(with the records) go to {RELEASE}-lineage.{NAMESPACE}.svc.cluster.local:4317" in off
    on = render({"collector": {"enabled": True, "tracing": {"endpoint": "tempo:4317"}}}).notes
    assert "outbox (/var/lib/scoregate-outbox) to the lineage store" in on
    assert f"redacted spans go to {RELEASE}-collector.{NAMESPACE}.svc.cluster.local:4317" in on


def test_dashboard_queries_only_metrics_the_gateway_exports(renders: dict[str, Rendered]) -> None:
    """The gateway's and its outbox's families; the store's are checked against a real store's
    /metrics in test_chart_alerts_firing.py."""
    from gateway.metrics import GatewayMetrics
    from gateway.outbox.metrics import OutboxMetrics

    metrics = GatewayMetrics()
    OutboxMetrics(metrics.registry)
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "gauge": [""]}
    exported = {
        family.name + suffix
        for family in metrics.registry.collect()
        for suffix in suffixes.get(family.type, [""])
    }
    board = renders["production"].component("ConfigMap", "dashboard")["data"]["scoregate.json"]
    queried = set(re.findall(r"scoregate_(?:gateway|outbox)_[a-z0-9_]+", board))
    assert queried and queried <= exported, sorted(queried - exported)


def _probe_port(probe: Obj) -> int:
    """A probe's port: gRPC health on an h2c listener, TCP on a TLS one (the kubelet's gRPC
    probe speaks h2c only)."""
    (action,) = {"grpc", "tcpSocket"} & set(probe)
    return int(probe[action]["port"])
