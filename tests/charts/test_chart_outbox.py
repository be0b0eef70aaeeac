"""The gateway's durable outbox and tuning flags as the chart renders them.

The rendered args are parsed by the gateway's own settings parser, so a value that reaches the
wrong flag, or a flag the gateway does not know, fails here; that the gateway then serves with
them, and delivers a decision through the outbox, is test_chart_entrypoints.py's part.
"""

from __future__ import annotations

import re
from typing import Any

from chart_support import Obj, Rendered, container, render

from gateway.settings import GatewaySettings, parse_settings

_UNITS = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
_UNITS |= {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def _bytes(quantity: str) -> float:
    match = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", quantity)
    assert match, quantity
    return float(match[1]) * _UNITS[match[2]]


def _gateway(rendered: Rendered) -> tuple[Obj, Obj]:
    pod = rendered.component("Deployment", "gateway")["spec"]["template"]["spec"]
    return pod, container(rendered, "Deployment", "gateway", "gateway")


def _settings(c: Obj) -> GatewaySettings:
    return parse_settings([str(a) for a in c["args"]])


def test_the_outbox_is_on_a_writable_volume_big_enough(rendered: Rendered) -> None:
    """--outbox-dir is a mounted, writable volume (the root filesystem is read-only), sized for
    the outbox's bound plus segments, and decision spans never go to the lineage store."""
    pod, c = _gateway(rendered)
    settings = _settings(c)
    assert settings.outbox_dir is not None, f"{rendered.scenario}: outbox off"
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    (mount,) = [m for m in c["volumeMounts"] if m["mountPath"] == str(settings.outbox_dir)]
    assert not mount.get("readOnly")
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    if "emptyDir" in volume:
        size = volume["emptyDir"]["sizeLimit"]
    else:
        claim = volume["ephemeral"]["volumeClaimTemplate"]["spec"]
        assert claim["accessModes"] == ["ReadWriteOnce"]
        size = claim["resources"]["requests"]["storage"]
    # The kubelet evicts a pod whose emptyDir outgrows its limit: leave room for the bound, the
    # segment being written and one being deleted.
    assert _bytes(size) >= settings.outbox_max_bytes + 2 * settings.outbox_segment_bytes, size
    assert settings.otlp_endpoint != settings.lineage_endpoint
    assert settings.lineage_endpoint.startswith("scoregate-lineage.")
    collector = (rendered.values.get("collector") or {}).get("enabled", False)
    assert bool(settings.otlp_endpoint) == collector


def test_the_grace_period_covers_the_outbox_drain() -> None:
    values: dict[str, Any] = {
        "gateway": {"preStopSleepSeconds": 7, "drainSeconds": 11, "outbox": {"drainSeconds": 13}}
    }
    pod, c = _gateway(render(values))
    assert _settings(c).outbox_drain_s == 13
    assert pod["terminationGracePeriodSeconds"] == 7 + 11 + 13 + 5


def test_outbox_off_sends_records_as_spans_without_a_volume() -> None:
    pod, c = _gateway(render({"gateway": {"outbox": {"enabled": False}}}))
    settings = _settings(c)
    assert settings.outbox_dir is None
    assert not any(a.startswith("--outbox-") for a in c["args"])
    assert "outbox" not in {v["name"] for v in pod["volumes"]}
    assert settings.otlp_endpoint == settings.lineage_endpoint
    assert pod["terminationGracePeriodSeconds"] == 5 + 10 + 5


def test_values_reach_the_gateway_flags() -> None:
    values: dict[str, Any] = {
        "gateway": {
            "shadowMaxInFlight": 3,
            "reloadIntervalSeconds": 0,
            "batching": {"enabled": False, "maxSize": 8, "maxWaitMicros": 0},
            "outbox": {
                "maxBytes": 5 * 2**30,
                "maxRecords": 4_000_000,
                "segmentBytes": 2**20,
                "sync": "thread",
                "preallocate": False,
                "drainSeconds": 30,
                "volume": {"type": "emptyDir", "size": "6Gi"},
            },
        }
    }
    pod, c = _gateway(render(values))
    s = _settings(c)
    assert (s.shadow_max_in_flight, s.reload_interval_s) == (3, 0)
    assert (s.batching, s.batch_max_size, s.batch_max_wait_us) == (False, 8, 0)
    assert (s.outbox_max_bytes, s.outbox_max_records) == (5 * 2**30, 4_000_000)
    assert (s.outbox_segment_bytes, s.outbox_drain_s) == (2**20, 30)
    assert (s.outbox_sync, s.outbox_preallocate) == ("thread", False)
    (volume,) = [v for v in pod["volumes"] if v["name"] == "outbox"]
    assert volume["emptyDir"] == {"sizeLimit": "6Gi"}


def test_chart_defaults_are_the_gateways() -> None:
    """The chart passes every tuning flag explicitly; its defaults are the gateway's own."""
    _, c = _gateway(render())
    ours = _settings(c)
    fields = GatewaySettings.model_fields
    for name in (
        "shadow_max_in_flight",
        "reload_interval_s",
        "batching",
        "batch_max_size",
        "batch_max_wait_us",
        "outbox_max_bytes",
        "outbox_max_records",
        "outbox_segment_bytes",
        "outbox_sync",
        "outbox_preallocate",
        "outbox_drain_s",
    ):
        assert getattr(ours, name) == fields[name].default, name


def test_load_shedding_values_reach_the_gateway() -> None:
    _, c = _gateway(render({"gateway": {"maxInFlight": 40}}))
    s = _settings(c)
    assert (s.max_in_flight, s.max_pending_calls) == (
        40,
        GatewaySettings.model_fields["max_pending_calls"].default,
    )
    _, c = _gateway(render({"gateway": {"maxInFlight": 40, "maxPendingCalls": 6}}))
    assert (_settings(c).max_in_flight, _settings(c).max_pending_calls) == (40, 6)
    _, c = _gateway(render())
    assert _settings(c).max_in_flight is None
    assert "--max-pending-calls" not in c["args"]
