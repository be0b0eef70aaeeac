"""The approvals check against a lookup at its protocol seam (the store's side is tested on real
processes in test_gateway_approvals.py): which arms are checked, enforce and warn, the cache's
bounded age, failing closed and open."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest
import yaml

from gateway.errors import ConfigError
from gateway.routing.approvals import ApprovalGate, ApprovalState, ApprovalsUnavailable
from gateway.routing.compiled import Routes, compile_routes
from gateway.routing.schema import parse_routes
from runtimes.manifest import Manifest


class Lookup:
    def __init__(self, approved: set[str]) -> None:
        self.approved = approved
        self.down = False
        self.asked: list[list[str]] = []

    async def lookup(self, shas: Sequence[str]) -> Mapping[str, ApprovalState]:
        self.asked.append(list(shas))
        if self.down:
            raise ApprovalsUnavailable("lineage store at x: UNAVAILABLE")
        return {
            s: ApprovalState(s in self.approved, "" if s in self.approved else "0 of 2")
            for s in shas
        }


def routes(demo_config: Callable[[str], dict[str, Any]], manifests: Any, **point: Any) -> Routes:
    config = demo_config("127.0.0.1:1")
    card = config["decision_points"]["card-fraud"]
    card.update(point)
    config["decision_points"] = {"card-fraud": card}
    return compile_routes(parse_routes(yaml.safe_dump(config)), manifests, "v")


@pytest.fixture
def shas(manifests: dict[tuple[str, str], Manifest]) -> dict[str, str]:
    return {v: manifests[("card-fraud", v)].artifact_sha256 for v in ("1", "2")}


V2 = {"model": "card-fraud", "version": "2"}


async def test_primary_canary_and_fallback_are_checked_shadows_and_weight_zero_are_not(
    demo_config: Any, manifests: Any, shas: dict[str, str]
) -> None:
    lookup = Lookup({shas["1"]})
    gate = ApprovalGate(lookup, "enforce")
    assert await gate.check(routes(demo_config, manifests, shadows=[{"target": V2}])) == ()
    assert (
        await gate.check(routes(demo_config, manifests, canary={"target": V2, "weight": 0})) == ()
    )
    for point, arm in (
        ({"canary": {"target": V2, "weight": 0.01}}, "canary"),
        ({"fallback": {"chain": [V2]}}, "fallback.chain[0]"),
    ):
        with pytest.raises(ConfigError) as refused:
            await gate.check(routes(demo_config, manifests, **point))
        assert (
            f"decision_points.card-fraud.{arm}: card-fraud version 2 (artifact {shas['2'][:12]}) "
            "has no valid approval: 0 of 2" in str(refused.value)
        )


async def test_warn_and_off(demo_config: Any, manifests: Any, shas: dict[str, str]) -> None:
    lookup = Lookup({shas["1"]})
    canary = {"target": V2, "weight": 5}
    warned = await ApprovalGate(lookup, "enforce").check(
        routes(demo_config, manifests, canary=canary, approvals="warn")
    )
    assert len(warned) == 1 and "decision_points.card-fraud.canary" in warned[0]
    asked = len(lookup.asked)
    assert (
        await ApprovalGate(lookup, "off").check(routes(demo_config, manifests, canary=canary)) == ()
    )
    assert len(lookup.asked) == asked, "off does not ask the store"


async def test_cached_answers_stand_in_for_a_bounded_age_then_it_fails_closed_or_open(
    demo_config: Any, manifests: Any, shas: dict[str, str]
) -> None:
    now = [0.0]
    lookup = Lookup({shas["1"], shas["2"]})
    gate = ApprovalGate(lookup, "enforce", max_age_s=60, clock=lambda: now[0])
    canary = routes(demo_config, manifests, canary={"target": V2, "weight": 5})
    assert await gate.check(canary) == ()
    lookup.down = True
    now[0] = 59.0
    assert await gate.check(canary) == (), "answers younger than max_age_s stand in"
    now[0] = 61.0
    with pytest.raises(ConfigError, match="cannot read model approvals: lineage store at x"):
        await gate.check(canary)
    opened = ApprovalGate(lookup, "enforce", fail_open=True)
    accepted = await opened.check(canary)
    assert len(accepted) == 2 and all("accepted (fail open)" in line for line in accepted)
