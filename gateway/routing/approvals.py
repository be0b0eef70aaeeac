"""The approvals check: a routing config gives traffic only to approved model versions.

Checked when a config is loaded (start-up) and on every reload, never per decision. The arms
that give a version traffic are the primary, a canary with weight above 0 and every model step
of the fallback chain; shadows are not checked (mirroring an unapproved version is how its
evidence is gathered). Each version is looked up by its manifest's artifact sha256 in the
lineage store (``ApprovalLookup``), which applies the four-eyes rule.

Per decision point, ``approvals: enforce`` refuses the config, naming the decision point, the
arm and the version; ``warn`` accepts it and reports each unapproved arm (a log line, the
``scoregate_gateway_unapproved_arms`` gauge and the route-change record). A point without the
key takes the gateway's default, which may also be ``off`` (not checked).

The answers are cached per artifact. Each check asks the store again; when the store cannot
be read, answers younger than ``max_age_s`` stand in, and a version without one fails closed
(the config is refused) unless the gateway is set to fail open (accepted, with a warning).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from gateway.errors import ConfigError
from gateway.routing.compiled import Routes
from gateway.runtime_client.targets import ModelTarget

log = logging.getLogger(__name__)

Policy = Literal["off", "warn", "enforce"]


class ApprovalsUnavailable(Exception):
    """The store could not say (unreachable, refused the gateway, answered wrongly)."""


@dataclass(frozen=True, slots=True)
class ApprovalState:
    approved: bool
    missing: str
    """Why not approved, in the store's words ("1 of 2 approvals (m.owner)")."""


class ApprovalLookup(Protocol):
    async def lookup(self, artifact_sha256s: Sequence[str]) -> Mapping[str, ApprovalState]: ...


@dataclass(frozen=True, slots=True)
class Arm:
    decision_point: str
    arm: str
    target: ModelTarget

    def describe(self) -> str:
        sha = self.target.manifest.artifact_sha256
        return (
            f"decision_points.{self.decision_point}.{self.arm}: {self.target.model} version "
            f"{self.target.version} (artifact {sha[:12]})"
        )


def traffic_arms(routes: Routes, policy_of: Callable[[str], Policy]) -> list[tuple[Arm, Policy]]:
    """Every arm that gives a version traffic, with its decision point's policy (off skipped)."""
    out: list[tuple[Arm, Policy]] = []
    for name, point in sorted(routes.decision_points.items()):
        policy = policy_of(name)
        if policy == "off":
            continue
        arms = [Arm(name, "primary", point.primary)]
        if point.canary is not None and point.canary.weight > 0:
            arms.append(Arm(name, "canary", point.canary.target))
        steps = point.fallback.chain if point.fallback is not None else ()
        arms += [
            Arm(name, f"fallback.chain[{i}]", s)
            for i, s in enumerate(steps)
            if isinstance(s, ModelTarget)
        ]
        out += [(arm, policy) for arm in arms]
    return out


class ApprovalGate:
    def __init__(
        self,
        lookup: ApprovalLookup | None,
        default: Policy,
        *,
        fail_open: bool = False,
        max_age_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lookup = lookup
        self._default = default
        self._fail_open = fail_open
        self._max_age_s = max_age_s
        self._clock = clock
        self._cache: dict[str, tuple[ApprovalState, float]] = {}

    def policy_of(self, routes: Routes) -> Callable[[str], Policy]:
        config = routes.config

        def of(name: str) -> Policy:
            own = config.decision_points[name].approvals if config is not None else None
            return own or self._default

        return of

    async def check(self, routes: Routes) -> tuple[str, ...]:
        """The unapproved arms accepted under ``warn`` (one line each); ConfigError when an
        ``enforce`` point routes traffic to an unapproved version, or when approvals cannot be
        read and the gate fails closed."""
        arms = traffic_arms(routes, self.policy_of(routes))
        if not arms:
            return ()
        shas = sorted({arm.target.manifest.artifact_sha256 for arm, _ in arms})
        states, unreadable = await self._states(shas)
        refused: list[str] = []
        warned: list[str] = []
        for arm, policy in arms:
            state = states.get(arm.target.manifest.artifact_sha256)
            if state is None:
                # Unreadable and failing open: accepted, and said so.
                warned.append(f"{arm.describe()}: approvals not checked ({unreadable})")
            elif not state.approved:
                line = f"{arm.describe()} has no valid approval: {state.missing}"
                (refused if policy == "enforce" else warned).append(line)
        if refused:
            raise ConfigError(
                "traffic to unapproved model versions refused (approvals: enforce):\n  "
                + "\n  ".join(refused)
            )
        for line in warned:
            log.warning("routing to an unapproved model version (approvals: warn): %s", line)
        return tuple(warned)

    async def _states(self, shas: list[str]) -> tuple[dict[str, ApprovalState], str]:
        now = self._clock()
        try:
            if self._lookup is None:
                raise ApprovalsUnavailable("no lineage store configured (--lineage-endpoint)")
            found = await self._lookup.lookup(shas)
        except ApprovalsUnavailable as e:
            oldest = now - self._max_age_s
            cached = {sha: self._cache[sha] for sha in shas if sha in self._cache}
            fresh = {sha: state for sha, (state, at) in cached.items() if at >= oldest}
            if len(fresh) == len(shas):
                log.warning(
                    "approvals unreadable (%s); using answers cached within %gs", e, self._max_age_s
                )
                return fresh, ""
            if not self._fail_open:
                raise ConfigError(
                    f"cannot read model approvals: {e}; refused (fail closed: set "
                    "--approvals-fail-open true to accept routes the store cannot vouch for)"
                ) from None
            log.warning("approvals unreadable (%s); accepted without them (fail open)", e)
            return fresh, f"approvals unreadable: {e}; accepted (fail open)"
        for sha, state in found.items():
            self._cache[sha] = (state, now)
        missing = [sha for sha in shas if sha not in found]
        if missing:
            raise ConfigError(f"the lineage store gave no approval status for {missing[0]}")
        return {sha: found[sha] for sha in shas}, ""
