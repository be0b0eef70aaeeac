"""The chart's security values: TLS from Secrets or cert-manager, client certificates, tokens,
the access policy, the gateway's mTLS identity at the store, and the mesh for the runtime hop.

cert-manager's and Istio's CRDs are not among the reference schemas beside the checkout (only
KServe's are, in shared/kserve-crds), so their objects are checked against the minimal closed
schemas below: the fields the chart sets, each required one present, nothing misspelt. They are
written here from cert-manager's ``cert-manager.io/v1`` Certificate and Istio's
``security.istio.io/v1`` API references, not copied from the CRDs; replace them with the CRDs'
own schemas (``crd_schemas``) once those are vendored beside the KServe ones.
"""

from __future__ import annotations

import copy
from typing import Any

import helm_python as helm
import jsonschema
import pytest
import yaml
from chart_support import NAMESPACE, RELEASE, Obj, Rendered, container, render

_STR = {"type": "string", "minLength": 1}
_STRS = {"type": "array", "minItems": 1, "items": _STR}
_DURATION = {"type": "string", "pattern": "^([0-9]+(\\.[0-9]+)?(h|m|s))+$"}
_SELECTOR = {
    "type": "object",
    "additionalProperties": False,
    "required": ["matchLabels"],
    "properties": {"matchLabels": {"type": "object", "additionalProperties": _STR}},
}


def _closed(required: list[str], **properties: Any) -> Obj:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": required,
        "properties": properties,
    }


def _resource(api_version: str, kind: str, spec: Obj) -> Obj:
    return _closed(
        ["apiVersion", "kind", "metadata", "spec"],
        apiVersion={"const": api_version},
        kind={"const": kind},
        metadata={"type": "object", "required": ["name"]},
        spec=spec,
    )


USAGES = ["digital signature", "key encipherment", "server auth", "client auth"]

MINIMAL_SCHEMAS: dict[tuple[str, str], Obj] = {
    ("cert-manager.io/v1", "Certificate"): _resource(
        "cert-manager.io/v1",
        "Certificate",
        _closed(
            ["secretName", "issuerRef"],
            secretName=_STR,
            duration=_DURATION,
            renewBefore=_DURATION,
            commonName=_STR,
            dnsNames=_STRS,
            uris=_STRS,
            privateKey=_closed(
                [],
                algorithm={"enum": ["RSA", "ECDSA", "Ed25519"]},
                size={"type": "integer"},
                rotationPolicy={"enum": ["Never", "Always"]},
                encoding={"enum": ["PKCS1", "PKCS8"]},
            ),
            usages={"type": "array", "items": {"enum": USAGES}},
            issuerRef=_closed(["name"], name=_STR, kind=_STR, group=_STR),
        ),
    ),
    ("security.istio.io/v1", "PeerAuthentication"): _resource(
        "security.istio.io/v1",
        "PeerAuthentication",
        _closed(
            ["mtls"],
            selector=_SELECTOR,
            mtls=_closed(["mode"], mode={"enum": ["UNSET", "DISABLE", "PERMISSIVE", "STRICT"]}),
        ),
    ),
    ("security.istio.io/v1", "AuthorizationPolicy"): _resource(
        "security.istio.io/v1",
        "AuthorizationPolicy",
        _closed(
            ["action", "rules"],
            selector=_SELECTOR,
            action={"enum": ["ALLOW", "DENY", "AUDIT", "CUSTOM"]},
            rules={
                "type": "array",
                "minItems": 1,
                "items": _closed(
                    ["from"],
                    **{
                        "from": {
                            "type": "array",
                            "items": _closed(
                                ["source"],
                                source=_closed(
                                    [], principals=_STRS, namespaces=_STRS, ipBlocks=_STRS
                                ),
                            ),
                        }
                    },
                ),
            },
        ),
    ),
}


def _errors(obj: Obj) -> list[str]:
    schema = MINIMAL_SCHEMAS[(obj["apiVersion"], obj["kind"])]
    return [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
        for e in jsonschema.Draft7Validator(schema).iter_errors(obj)
    ]


def _arg(c: Obj, flag: str) -> str:
    args = [str(a) for a in c["args"]]
    assert flag in args, f"{c['name']}: no {flag}"
    return args[args.index(flag) + 1]


def _volume(rendered: Rendered, kind: str, component: str, name: str) -> Obj:
    pod = rendered.component(kind, component)["spec"]["template"]["spec"]
    return next(v for v in pod["volumes"] if v["name"] == name)


def _policy(rendered: Rendered) -> dict[str, Any]:
    loaded = yaml.safe_load(rendered.component("ConfigMap", "access-policy")["data"]["policy.yaml"])
    return dict(loaded)


WORKLOADS = [("Deployment", "gateway", "gateway"), ("StatefulSet", "lineage", "lineage")]


def test_custom_resources_fit_their_minimal_schemas(rendered: Rendered) -> None:
    for obj in rendered.objects:
        if obj["apiVersion"].startswith(("cert-manager.io/", "security.istio.io/")):
            assert not _errors(obj), f"{obj['kind']}/{obj['metadata']['name']}: {_errors(obj)}"


def test_the_minimal_schemas_refuse_a_misspelt_field(renders: dict[str, Rendered]) -> None:
    prod = renders["production"]
    cert = copy.deepcopy(prod.component("Certificate", "gateway"))
    cert["spec"]["dnsName"] = cert["spec"].pop("dnsNames")
    assert any("dnsName" in e for e in _errors(cert))
    peer = copy.deepcopy(prod.component("PeerAuthentication", "runtime"))
    peer["spec"]["mtls"]["mode"] = "STRICTLY"
    assert _errors(peer)


def test_demo_values_are_the_explicit_insecure_mode(renders: dict[str, Rendered]) -> None:
    for name in ("default", "minimal", "canary-in-progress"):
        for kind, component, cname in WORKLOADS:
            c = container(renders[name], kind, component, cname)
            assert _arg(c, "--plaintext") == "true" and _arg(c, "--open-access") == "true"
            assert "--tls-cert-file" not in c["args"]
        kinds = {o["kind"] for o in renders[name].objects}
        assert not kinds & {"Certificate", "PeerAuthentication", "AuthorizationPolicy"}


def test_production_serves_mutual_tls_with_tokens_and_the_policy(
    renders: dict[str, Rendered],
) -> None:
    prod = renders["production"]
    for kind, component, cname in WORKLOADS:
        c = container(prod, kind, component, cname)
        assert "--open-access" not in c["args"], component
        assert _arg(c, "--plaintext") == "false"
        assert _arg(c, "--tls-client-certificate") == "required"
        assert _arg(c, "--access-policy") == "/etc/scoregate-policy/policy.yaml"
        assert _arg(c, "--jwt-jwks-file") == "/etc/scoregate-jwks/jwks.json"
        assert _arg(c, "--jwt-algorithms") == "RS256,ES256"
        mounts = {m["name"]: m for m in c["volumeMounts"]}
        for volume, path in (
            ("tls", _arg(c, "--tls-cert-file")),
            ("access-policy", _arg(c, "--access-policy")),
            ("jwks", _arg(c, "--jwt-jwks-file")),
        ):
            # A whole directory: a subPath mount would never see a Secret or ConfigMap update.
            assert "subPath" not in mounts[volume], (component, volume)
            assert path.startswith(mounts[volume]["mountPath"] + "/"), (component, volume)
        # The kubelet's gRPC probe speaks h2c only.
        assert all("tcpSocket" in c[p] for p in ("startupProbe", "readinessProbe"))
        secret = _volume(prod, kind, component, "tls")["secret"]["secretName"]
        assert secret == prod.component("Certificate", component)["spec"]["secretName"]
        policy = _volume(prod, kind, component, "access-policy")["configMap"]["name"]
        assert policy == f"{RELEASE}-access-policy"
    assert _volume(prod, "Deployment", "gateway", "jwks")["configMap"]["name"] == "bank-idp-jwks"
    assert _volume(prod, "StatefulSet", "lineage", "jwks")["secret"]["secretName"] == (
        "bank-idp-jwks"
    )


def test_the_gateway_reaches_the_store_with_its_granted_certificate(
    renders: dict[str, Rendered],
) -> None:
    prod = renders["production"]
    c = container(prod, "Deployment", "gateway", "gateway")
    assert _arg(c, "--lineage-tls") == "true"
    assert _arg(c, "--lineage-tls-cert-file") == _arg(c, "--tls-cert-file")
    assert _arg(c, "--lineage-tls-ca-file") == _arg(c, "--tls-ca-file")
    # The name the gateway checks is one the store's certificate carries.
    lineage_cert = prod.component("Certificate", "lineage")["spec"]
    assert _arg(c, "--lineage-tls-server-name") in lineage_cert["dnsNames"]
    assert _arg(c, "--lineage-endpoint").startswith(_arg(c, "--lineage-tls-server-name") + ":")
    gateway_cert = prod.component("Certificate", "gateway")["spec"]
    assert {"server auth", "client auth"} <= set(gateway_cert["usages"])
    (principal,) = gateway_cert["uris"]
    assert principal == f"spiffe://bank.example/ns/{NAMESPACE}/sa/{RELEASE}-gateway"
    grants = [g for g in _policy(prod)["lineage"] if principal in g["principals"]]
    # Records (OTLP), route changes, the manifests a route change names (RegisterManifest), and
    # the approvals a routes config is checked against (approvals: enforce|warn on any point).
    assert [sorted(g["permissions"]) for g in grants] == [
        ["ingest", "read_approvals", "record_route_changes", "register_models"]
    ]
    # The values' own grants are kept beside the chart's.
    assert any("risk-analyst" in g["principals"] for g in _policy(prod)["lineage"])


def test_the_helm_test_presents_a_granted_certificate(renders: dict[str, Rendered]) -> None:
    prod = renders["production"]
    pod = prod.of_kind("Pod")[0]["spec"]
    score = next(c for c in pod["containers"] if c["name"] == "score")
    assert "-plaintext" not in score["args"] and "-cert" in score["args"]
    test_cert = prod.component("Certificate", "test")["spec"]
    assert pod["volumes"][0]["secret"]["secretName"] == test_cert["secretName"]
    gateway_cert = prod.component("Certificate", "gateway")["spec"]
    assert score["args"][-2].split(":")[0] in gateway_cert["dnsNames"]
    point = prod.values.get("tests", {}).get("scoreRequest", {}).get("decision_point")
    scoring = _policy(prod)["scoring"]
    assert any(
        test_cert["uris"][0] in g["principals"] and (point or "card-fraud") in g["decision_points"]
        for g in scoring
    )


def test_the_mesh_guards_the_runtime_hop(renders: dict[str, Rendered]) -> None:
    prod = renders["production"]
    peer = prod.component("PeerAuthentication", "runtime")["spec"]
    assert peer["mtls"] == {"mode": "STRICT"}
    allow = prod.component("AuthorizationPolicy", "runtime")["spec"]
    assert allow["action"] == "ALLOW"
    gateway_sa = prod.component("Deployment", "gateway")["spec"]["template"]["spec"][
        "serviceAccountName"
    ]
    sources = [s["source"] for rule in allow["rules"] for s in rule["from"]]
    assert sources == [{"principals": [f"cluster.local/ns/{NAMESPACE}/sa/{gateway_sa}"]}]
    # Both select exactly the runtime pods, which carry a sidecar to terminate the mesh's TLS.
    for isvc in prod.of_kind("InferenceService"):
        labels = isvc["spec"]["predictor"]["labels"]
        assert labels["sidecar.istio.io/inject"] == "true"
        for spec in (peer, allow):
            assert spec["selector"]["matchLabels"].items() <= labels.items()
    gateway = prod.component("Deployment", "gateway")["spec"]["template"]
    assert gateway["metadata"]["labels"]["sidecar.istio.io/inject"] == "true"
    annotations = gateway["metadata"]["annotations"]
    # The gateway's own TLS listener and its mTLS to the store bypass its sidecar.
    assert annotations["traffic.sidecar.istio.io/excludeInboundPorts"] == "8090"
    assert annotations["traffic.sidecar.istio.io/excludeOutboundPorts"] == "4317"


def _allows_istiod(policy: Obj) -> bool:
    return any(
        {"port": 15012, "protocol": "TCP"} in rule.get("ports", [])
        and any(
            peer.get("namespaceSelector", {}).get("matchLabels", {})
            == {"kubernetes.io/metadata.name": "istio-system"}
            for peer in rule.get("to", [])
        )
        for rule in policy["spec"].get("egress", [])
    )


def test_every_sidecar_may_reach_istiod(renders: dict[str, Rendered]) -> None:
    """Under the default-deny NetworkPolicy a sidecar that cannot reach istiod never gets its
    configuration or certificate, and the pod never becomes ready."""
    prod = renders["production"]
    sidecar_pods = [
        isvc["spec"]["predictor"]["labels"] for isvc in prod.of_kind("InferenceService")
    ]
    sidecar_pods.append(
        prod.component("Deployment", "gateway")["spec"]["template"]["metadata"]["labels"]
    )
    assert all(labels["sidecar.istio.io/inject"] == "true" for labels in sidecar_pods)
    to_istiod = [p for p in prod.of_kind("NetworkPolicy") if _allows_istiod(p)]
    for labels in sidecar_pods:
        assert any(
            p["spec"]["podSelector"]["matchLabels"].items() <= labels.items() for p in to_istiod
        ), labels
    # Only the pods with sidecars get it; without the mesh no policy opens it.
    assert len(to_istiod) == 2
    assert not [p for p in renders["default"].of_kind("NetworkPolicy") if _allows_istiod(p)]


def test_secrets_instead_of_cert_manager() -> None:
    values = {
        "security": {"insecureDemo": False},
        "gateway": {"security": {"tlsSecretName": "gw-tls", "clientCertificate": "off"}},
    }
    rendered = render(values)
    assert not rendered.of_kind("Certificate")
    assert _volume(rendered, "Deployment", "gateway", "tls")["secret"]["secretName"] == "gw-tls"
    lineage_tls = _volume(rendered, "StatefulSet", "lineage", "tls")["secret"]["secretName"]
    assert lineage_tls == f"{RELEASE}-lineage-tls"
    c = container(rendered, "Deployment", "gateway", "gateway")
    assert _arg(c, "--tls-client-certificate") == "off"
    assert "--jwt-jwks-file" not in c["args"] and "--jwt-jwks-url" not in c["args"]


def test_a_jwks_url_is_passed_through() -> None:
    jwt = {
        "jwksUrl": "https://idp.bank.example/jwks.json",
        "issuer": "https://idp.bank.example",
        "audience": "scoregate",
        "algorithms": ["ES256"],
    }
    rendered = render({"security": {"insecureDemo": False}, "gateway": {"security": {"jwt": jwt}}})
    c = container(rendered, "Deployment", "gateway", "gateway")
    assert _arg(c, "--jwt-jwks-url") == jwt["jwksUrl"]
    assert "jwks" not in {m["name"] for m in c["volumeMounts"]}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"security": {"insecureDemo": False, "certificates": "certManager"}},
            "issuerRef.name is required",
        ),
        (
            {
                "security": {"insecureDemo": False},
                "gateway": {"security": {"jwt": {"jwksConfigMap": "jwks"}}},
            },
            "gateway.security.jwt.issuer is required",
        ),
        (
            {
                "security": {"insecureDemo": False},
                "gateway": {"outbox": {"enabled": False}},
                "collector": {"enabled": True},
            },
            "cannot forward decision spans to a TLS lineage store",
        ),
        (
            {
                "security": {"insecureDemo": False},
                "gateway": {"security": {"jwt": {"jwksUrl": "http://idp.bank.example/jwks.json"}}},
            },
            "jwksUrl",
        ),
        (
            {
                "security": {
                    "accessPolicy": {
                        "lineage": [{"principals": ["x"], "permissions": ["read_everything"]}]
                    }
                }
            },
            "/security/accessPolicy/lineage/0/permissions/0",
        ),
    ],
)
def test_unsafe_or_incomplete_security_values_fail_the_render(
    values: dict[str, Any], message: str
) -> None:
    with pytest.raises(helm.HelmError) as raised:
        render(values)
    assert message in str(raised.value)
