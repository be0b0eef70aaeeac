"""Routes for the local topology that give the canary and fallback scenarios something to measure.

``gateway.topology.demo_routes`` serves every decision point from its champion alone; these edit
that config (``Topology(routes=...)``) the way an SRE would edit routes.yaml: a canary at a
weight, or a fallback chain ending in the demo rules files (``gateway/demo_rules``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from gateway.demo_rules import DEMO_RULES

RoutesEdit = Callable[[dict[str, Any]], dict[str, Any]]


def with_fallback(routes: dict[str, Any]) -> dict[str, Any]:
    """Every decision point falls back to its model's other versions, then to its rules file."""
    out = copy.deepcopy(routes)
    rules = out.setdefault("rules", {})
    for point in out["decision_points"].values():
        model = point["primary"]["model"]
        rules_name = f"{model}-rules"
        # Absolute: the demo rules stay in the package instead of being copied beside routes.yaml.
        rules[rules_name] = {"file": str(DEMO_RULES[model])}
        version = point["primary"]["version"]
        primary = out["models"][model].get("aliases", {}).get(version, version)
        others = [v for v in sorted(out["models"][model]["versions"], key=int) if v != primary]
        chain: list[dict[str, str]] = [{"model": model, "version": v} for v in others]
        point["fallback"] = {"chain": [*chain, {"rules": rules_name}]}
    return out


def without_reasons(routes: dict[str, Any]) -> dict[str, Any]:
    """Every decision point's reasons off: the runtime is asked for no contributions."""
    out = copy.deepcopy(routes)
    for point in out["decision_points"].values():
        point["reasons"] = {"max_reasons": 0}
    return out


def with_canary(weight: float, decision_point: str = "card-fraud") -> RoutesEdit:
    """``decision_point``'s challenger answers for ``weight`` (0..1) of entities."""

    def edit(routes: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(routes)
        point = out["decision_points"][decision_point]
        target = {"model": point["primary"]["model"], "version": "challenger"}
        point["canary"] = {"target": target, "weight": round(weight * 100, 2)}
        return out

    return edit


def for_scenario(scenario: str, canary_weight: float | None) -> RoutesEdit | None:
    """The routes edit a scenario needs to be meaningful locally, if any."""
    if scenario == "fallback":
        return with_fallback
    if scenario == "canary" and canary_weight is not None:
        return with_canary(canary_weight)
    return None
