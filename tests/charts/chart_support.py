"""Renders charts/scoregate with Helm's own engine and answers questions about what it rendered.

Rendering goes through helm-python-sdk, which binds Helm's Go library: the templates, values
coalescing and values.schema.json validation are Helm's, offline (no cluster, ``lookup`` empty).
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml
from support import postgres as support_postgres

REPO = Path(__file__).resolve().parents[2]
CHART_DIR = REPO / "charts" / "scoregate"
CI_DIR = CHART_DIR / "ci"
# Reference data beside every checkout and in CI (see its README); never copied into the repo.
KSERVE_CRDS = REPO.parent / "shared" / "kserve-crds"

RELEASE = "scoregate"
NAMESPACE = "scoring"
# The Kubernetes release every object is validated against (kubernetes-validate ships its schemas).
KUBERNETES_VERSION = "1.37.0"

KSERVE_KINDS = {"ServingRuntime", "ClusterServingRuntime", "InferenceService"}
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"}

Obj = dict[str, Any]


@dataclass
class Rendered:
    """One render: the objects by kind and name, NOTES.txt, and how long Helm took."""

    scenario: str
    values: dict[str, Any]
    objects: list[Obj]
    notes: str
    seconds: float
    sources: dict[str, str] = field(default_factory=dict)

    def of_kind(self, kind: str) -> list[Obj]:
        return [o for o in self.objects if o["kind"] == kind]

    def get(self, kind: str, name: str) -> Obj:
        matches = [o for o in self.of_kind(kind) if o["metadata"]["name"] == name]
        assert len(matches) == 1, f"{kind}/{name}: {len(matches)} rendered"
        return matches[0]

    def component(self, kind: str, component: str) -> Obj:
        return self.get(kind, f"{RELEASE}-{component}")

    def routes_yaml(self) -> str:
        return str(self.component("ConfigMap", "gateway")["data"]["routes.yaml"])

    def routes_files(self) -> dict[str, str]:
        """The routes ConfigMap's data: routes.yaml and the rules files beside it."""
        return dict(self.component("ConfigMap", "gateway")["data"])

    def write_routes(self, folder: Path) -> Path:
        """The ConfigMap as the gateway's volume mount holds it; returns routes.yaml's path."""
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in self.routes_files().items():
            (folder / name).write_text(text)
        return folder / "routes.yaml"


def scenario_files() -> dict[str, Path | None]:
    """Default values plus every ci/*-values.yaml, by scenario name."""
    found: dict[str, Path | None] = {"default": None}
    for path in sorted(CI_DIR.glob("*-values.yaml")):
        found[path.name.removesuffix("-values.yaml")] = path
    return found


def load_values(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    loaded = yaml.safe_load(path.read_text())
    return dict(loaded or {})


def render(values: dict[str, Any] | None = None, scenario: str = "custom") -> Rendered:
    """Renders the chart as ``helm install RELEASE -n NAMESPACE -f values`` would."""
    with helm.Chart.load(CHART_DIR) as chart:
        start = time.perf_counter()
        manifests = chart.render(
            copy.deepcopy(values or {}), name=RELEASE, namespace=NAMESPACE, is_install=True
        )
        seconds = time.perf_counter() - start
    objects: list[Obj] = []
    notes = ""
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            notes = text
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                objects.append(doc)
    return Rendered(scenario, values or {}, objects, notes, seconds, manifests)


def pod_templates(rendered: Rendered) -> Iterator[tuple[str, Obj, list[Obj]]]:
    """Every Pod the release creates: (label, pod-level spec, containers incl. init containers).

    KServe builds a runtime pod from the InferenceService's predictor (pod-level fields) and the
    ServingRuntime's containers, so those are combined here the way the controller combines them.
    """
    for obj in rendered.objects:
        kind, name = obj["kind"], obj["metadata"]["name"]
        if kind in WORKLOAD_KINDS:
            spec = obj["spec"]["template"]["spec"]
            yield f"{kind}/{name}", spec, spec.get("initContainers", []) + spec["containers"]
        elif kind == "CronJob":
            spec = obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
            yield f"{kind}/{name}", spec, spec.get("initContainers", []) + spec["containers"]
        elif kind == "Pod":
            spec = obj["spec"]
            yield f"Pod/{name}", spec, spec.get("initContainers", []) + spec["containers"]
    runtimes = rendered.of_kind("ServingRuntime") + rendered.of_kind("ClusterServingRuntime")
    for isvc in rendered.of_kind("InferenceService"):
        predictor = isvc["spec"]["predictor"]
        runtime = next(
            r for r in runtimes if r["metadata"]["name"] == predictor["model"]["runtime"]
        )
        containers = [
            {**c, **_model_overrides(predictor["model"])} for c in runtime["spec"]["containers"]
        ]
        volumes = runtime["spec"].get("volumes", []) + predictor.get("volumes", [])
        yield (
            f"InferenceService/{isvc['metadata']['name']}",
            {**predictor, "volumes": volumes},
            containers,
        )


def _model_overrides(model: Obj) -> Obj:
    # KServe merges the predictor's model container over the runtime's kserve-container.
    return {k: v for k, v in model.items() if k in {"securityContext", "args", "command", "env"}}


def container(rendered: Rendered, kind: str, component: str, name: str) -> Obj:
    obj = rendered.component(kind, component)
    spec = obj["spec"]["template"]["spec"]
    return next(c for c in spec["containers"] if c["name"] == name)


def closed_schema(node: Any, top: bool = True) -> Any:
    """A CRD's structural schema as strict JSON Schema.

    Kubernetes prunes unknown fields silently, so a misspelt key would be lost without a word;
    here every object is closed (``additionalProperties: false``) unless the CRD marks it
    ``x-kubernetes-preserve-unknown-fields``. ``metadata`` is left to the API server.
    """
    if isinstance(node, list):
        return [closed_schema(n, top=False) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: closed_schema(v, top=False) for k, v in node.items() if k != "properties"}
    if "properties" in node:
        out["properties"] = {
            k: ({"type": "object"} if top and k == "metadata" else closed_schema(v, top=False))
            for k, v in node["properties"].items()
        }
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    is_object = node.get("type") == "object"
    if is_object and not node.get("x-kubernetes-preserve-unknown-fields"):
        out.setdefault("additionalProperties", False)
    return out


def crd_schemas(crd_dir: Path) -> dict[tuple[str, str], Obj]:
    """(apiVersion, kind) -> closed schema, for every served version of every CRD in ``crd_dir``."""
    schemas: dict[tuple[str, str], Obj] = {}
    for path in sorted(crd_dir.glob("*.yaml")):
        # The CRDs are megabytes of YAML: the C loader reads them ~10x faster.
        crd = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if version.get("served", True):
                raw = version["schema"]["openAPIV3Schema"]
                schemas[(f"{group}/{version['name']}", kind)] = closed_schema(raw)
    return schemas


# The scenarios the issue asks for, so that a deleted ci/ file is noticed.
SCENARIOS_EXPECTED = {"default", "minimal", "production", "canary-in-progress"}


def postgres_database(prefix: str = "scoregate_chart") -> contextlib.AbstractContextManager[str]:
    """A new, uniquely named database on the run's PostgreSQL server (tests/support/postgres.py:
    the configured one, or a throwaway one), dropped afterwards; skips, saying why, when there is
    no server."""
    return support_postgres.postgres_database(prefix)
