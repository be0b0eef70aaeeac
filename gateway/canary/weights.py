"""The one edit the controller makes to a routes file: a decision point's canary weight.

The same function serves the local file and the ConfigMap, so what a ConfigMap patch carries is
byte for byte what the gateway would reload from a file. The file is re-serialised from its
parsed form: keys keep their order, comments are not kept (the routes file's own history is in
lineage, every content hash with what changed).
"""

from __future__ import annotations

from typing import Any

import yaml

from gateway.canary.errors import RoutesError
from gateway.canary.plan import Candidate


def _point(config: Any, decision_point: str) -> dict[str, Any]:
    points = config.get("decision_points") if isinstance(config, dict) else None
    point = points.get(decision_point) if isinstance(points, dict) else None
    if not isinstance(point, dict):
        raise RoutesError(f"routes: decision_points.{decision_point}: no such decision point")
    return point


def _load(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise RoutesError(f"routes: not YAML: {e}") from None


def canary_weight(text: str, decision_point: str) -> float:
    """The canary weight the routes give ``decision_point`` now (0 without a canary)."""
    canary = _point(_load(text), decision_point).get("canary")
    return float(canary.get("weight", 0)) if isinstance(canary, dict) else 0.0


def with_canary_weight(text: str, decision_point: str, candidate: Candidate, weight: float) -> str:
    """``text`` with ``decision_point``'s canary serving ``candidate`` at ``weight`` percent;
    the stickiness key and everything else as they were."""
    config = _load(text)
    point = _point(config, decision_point)
    canary = point.get("canary")
    canary = dict(canary) if isinstance(canary, dict) else {}
    canary["target"] = {"model": candidate.model, "version": candidate.version}
    canary["weight"] = int(weight) if float(weight).is_integer() else round(weight, 2)
    point["canary"] = canary
    return yaml.safe_dump(config, sort_keys=False)


def served_names(text: str, candidate: Candidate) -> list[str]:
    """The names the candidate's endpoints serve it under, which the gateway records as a
    fallback's ``fallback_from`` when it fails: ``served_name``, by default
    ``<model>-v<version>``."""
    default = f"{candidate.model}-v{candidate.version}"
    config = _load(text)
    try:
        endpoints = config["models"][candidate.model]["versions"][candidate.version]["endpoints"]
    except (KeyError, TypeError):
        return [default]
    names = {
        str(e.get("served_name", default)) if isinstance(e, dict) else default
        for e in endpoints or ()
    }
    return sorted(names or {default})
