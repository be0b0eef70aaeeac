"""Every Pod of every scenario meets the restricted Pod Security Standard, plus a read-only root."""

from __future__ import annotations

from chart_support import Rendered, pod_templates


def test_every_pod_is_restricted(rendered: Rendered) -> None:
    pods = list(pod_templates(rendered))
    # gateway, lineage, helm test, and one runtime pod per model version at least
    assert len(pods) >= 3 + len(rendered.of_kind("InferenceService"))
    for label, pod, containers in pods:
        where = f"{rendered.scenario}: {label}"
        psc = pod["securityContext"]
        assert psc["runAsNonRoot"] is True, where
        assert psc["runAsUser"] != 0, where
        assert psc["seccompProfile"] == {"type": "RuntimeDefault"}, where
        assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
        assert pod.get("automountServiceAccountToken") is False, f"{where}: token automounted"
        assert containers, where
        for c in containers:
            csc = c["securityContext"]
            named = f"{where} container {c['name']}"
            assert csc["runAsNonRoot"] is True, named
            assert csc["allowPrivilegeEscalation"] is False, named
            assert csc["capabilities"] == {"drop": ["ALL"]}, named
            assert csc["seccompProfile"] == {"type": "RuntimeDefault"}, named
            assert csc["readOnlyRootFilesystem"] is True, named
            assert not csc.get("privileged"), named
            assert c.get("resources", {}).get("limits") or label.startswith("Pod/"), named


def test_service_accounts_do_not_automount_tokens(rendered: Rendered) -> None:
    accounts = rendered.of_kind("ServiceAccount")
    assert len(accounts) >= 2
    for sa in accounts:
        assert sa["automountServiceAccountToken"] is False, sa["metadata"]["name"]


def test_writable_paths_are_volumes(rendered: Rendered) -> None:
    """A read-only root needs /tmp (and data dirs) mounted; each writable mount is a volume."""
    for label, pod, containers in pod_templates(rendered):
        volumes = {v["name"] for v in pod.get("volumes", [])}
        for c in containers:
            for mount in c.get("volumeMounts", []):
                claims = {
                    t["metadata"]["name"]
                    for o in rendered.objects
                    if o["kind"] == "StatefulSet"
                    for t in o["spec"].get("volumeClaimTemplates", [])
                }
                assert mount["name"] in volumes | claims, f"{label}: {mount['name']}"
