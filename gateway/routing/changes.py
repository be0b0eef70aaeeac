"""Route-change events: when the routing config changed, to what version, and what changed.

The lineage store keeps the history of routing (which version served which decision point, from
when to when) from these events. ``RouteChangeSink`` is the seam: ``LoggingRouteChangeSink``
writes one log line per change; ``LineageRouteChangeSink`` (``gateway.recording.route_changes``)
sends it to the lineage store's ``RecordRouteChange``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.attempts.rules import RulesScorer
from gateway.routing.compiled import Routes
from gateway.routing.schema import RoutesConfig
from gateway.routing.splits import BUCKETS

log = logging.getLogger(__name__)

MAX_CHANGES = 50


@dataclass(frozen=True, slots=True)
class RouteChange:
    changed_at_us: int
    """When the new config started serving (UTC, microseconds since the epoch)."""
    config_version: str
    previous_version: str
    """Empty for the config a gateway starts with."""
    changes: tuple[str, ...]
    """One line per changed key: ``path: old -> new`` (``(none)`` when added or removed)."""
    source: str
    gateway_instance: str
    targets: tuple[ArmTarget, ...] = ()
    """Every arm in force after the change."""
    diff: Mapping[str, Any] = field(default_factory=dict)
    """The changes nested by path, leaves ``[old, new]`` (None when added or removed)."""
    unapproved: tuple[str, ...] = ()
    """Arms accepted with traffic to a version without a valid approval (approvals: warn)."""


@dataclass(frozen=True, slots=True)
class ArmTarget:
    decision_point: str
    arm: str
    model_name: str
    model_version: str
    weight: float
    """Share of the decision point's requests in [0, 1]; fallbacks 0 (they answer on failure)."""


def arm_targets(routes: Routes) -> tuple[ArmTarget, ...]:
    """The arms of every decision point of ``routes``, as the lineage store records them."""
    out: list[ArmTarget] = []
    for name, point in sorted(routes.decision_points.items()):
        canary = point.canary.weight / 100 if point.canary is not None else 0.0
        p = point.primary
        out.append(ArmTarget(name, "primary", p.model, p.version, 1.0 - canary))
        if point.canary is not None:
            c = point.canary.target
            out.append(ArmTarget(name, "canary", c.model, c.version, canary))
        for shadow in point.shadows:
            t = shadow.target
            out.append(ArmTarget(name, "shadow", t.model, t.version, shadow.buckets / BUCKETS))
        for step in point.fallback.chain if point.fallback is not None else ():
            if isinstance(step, RulesScorer):
                out.append(ArmTarget(name, "fallback", step.name, step.version, 0.0))
            else:
                out.append(ArmTarget(name, "fallback", step.model, step.version, 0.0))
    return tuple(out)


class RouteChangeSink(Protocol):
    def emit(self, change: RouteChange) -> None: ...


class LoggingRouteChangeSink:
    def emit(self, change: RouteChange) -> None:
        log.info(
            "route change: config %s (was %s) on %s from %s: %s",
            change.config_version,
            change.previous_version or "none",
            change.gateway_instance,
            change.source,
            "; ".join(change.changes),
        )


def _flatten(node: Any, path: str, out: dict[str, Any]) -> None:
    if isinstance(node, Mapping):
        for key, value in node.items():
            _flatten(value, f"{path}.{key}" if path else str(key), out)
    elif isinstance(node, list | tuple) and any(isinstance(v, Mapping) for v in node):
        for i, value in enumerate(node):
            _flatten(value, f"{path}[{i}]", out)
    else:
        out[path] = node


def describe_changes(
    old: RoutesConfig | None,
    new: RoutesConfig,
    old_rules: Mapping[str, bytes] | None = None,
    new_rules: Mapping[str, bytes] | None = None,
) -> tuple[tuple[str, ...], dict[str, Any]]:
    """What changed between two configs (defaults included): ``path: old -> new`` lines, and
    the same nested by path with ``[old, new]`` leaves."""
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    if old is not None:
        _flatten(old.model_dump(mode="json"), "", before)
    _flatten(new.model_dump(mode="json"), "", after)
    lines = []
    nested: dict[str, Any] = {}
    for path in sorted(before.keys() | after.keys()):
        a, b = before.get(path), after.get(path)
        if path in before and path in after and a == b:
            continue
        lines.append(f"{path}: {_show(path, before)} -> {_show(path, after)}")
        node = nested
        *parents, leaf = path.replace("[", ".[").split(".")
        for part in parents:
            child = node.get(part)
            if not isinstance(child, dict):
                # A section added or removed whole (a canary where there was none): its own
                # [None, ...] leaf gives way to the keys under it.
                child = node[part] = {}
            node = child
        node[leaf] = [a, b]
    old_rules, new_rules = old_rules or {}, new_rules or {}
    for name in sorted(old_rules.keys() & new_rules.keys()):
        if old_rules[name] != new_rules[name]:
            lines.append(f"rules.{name}: file content changed")
            nested.setdefault("rules", {}).setdefault(name, {})["content"] = ["old", "new"]
    if len(lines) > MAX_CHANGES:
        lines = [*lines[:MAX_CHANGES], f"... and {len(lines) - MAX_CHANGES} more"]
    return tuple(lines), nested


def _show(path: str, values: Mapping[str, Any]) -> str:
    return str(values[path]) if path in values else "(none)"
