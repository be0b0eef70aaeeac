"""Who is calling the store, for the servicers: set by ``governance.access`` for each call.

A contextvar rather than a parameter, so the servicers keep gRPC's signature; each call runs in
its own task, so one call's caller never leaks into another's.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass

from security.policy import AccessPolicy
from security.policy_schema import LineagePermission
from security.principal import ANONYMOUS, Principal


@dataclass(frozen=True, slots=True)
class Caller:
    """The call's principal and the policy it was checked under; ``policy`` None: open access
    (no authentication configured), where every permission is granted."""

    principal: Principal
    policy: AccessPolicy | None = None

    @property
    def authenticated(self) -> bool:
        return self.policy is not None

    def may(self, permission: LineagePermission) -> bool:
        return self.policy is None or permission in self.policy.grants(self.principal.id).lineage


OPEN_ACCESS = Caller(ANONYMOUS)

CALLER: contextvars.ContextVar[Caller] = contextvars.ContextVar(
    "lineage_caller", default=OPEN_ACCESS
)
