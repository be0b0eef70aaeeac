"""Who may call ScoringService: each call authenticated and authorised here, at the edge.

``EdgeAccess.principal`` verifies the call's credentials (``security.authenticator``) and
``EdgeAccess.caller`` checks the access policy in force for the decision point (and the pinned
version) the call asks for, returning the ``Caller`` the core records. Both raise the security
package's errors, which ``gateway.errors.status_for`` maps to UNAUTHENTICATED and
PERMISSION_DENIED. With open access (``--open-access``) every call is the anonymous caller.

Health and reflection are not ScoringService: they are served to anyone who completes the TLS
handshake (docs/security.md says why).
"""

from __future__ import annotations

import grpc

from gateway.caller import OPEN_ACCESS, Caller
from security.authenticator import Authenticator
from security.policy_reload import PolicyWatcher
from security.principal import ANONYMOUS, Principal


class EdgeAccess:
    """``authenticator`` and ``policy`` together, or neither (open access)."""

    def __init__(
        self, authenticator: Authenticator | None = None, policy: PolicyWatcher | None = None
    ) -> None:
        if (authenticator is None) != (policy is None):
            raise ValueError("authentication and an access policy go together")
        self._authenticator = authenticator
        self.policy = policy
        self._callers: dict[tuple[Principal, str], Caller] = {}

    @property
    def open(self) -> bool:
        return self._authenticator is None

    async def principal(self, context: grpc.aio.ServicerContext[object, object]) -> Principal:
        if self._authenticator is None:
            return ANONYMOUS
        return await self._authenticator.principal(
            context.invocation_metadata(), context.auth_context
        )

    def caller(self, principal: Principal, decision_point: str, *, pinned: bool) -> Caller:
        """The Caller to record; PermissionDenied when the policy does not allow the call."""
        if self.policy is None:
            return OPEN_ACCESS
        policy = self.policy.current
        policy.check_score(principal.id, decision_point, pinned=pinned)
        key = (principal, policy.version)
        found = self._callers.get(key)
        if found is None:
            if len(self._callers) >= 10_000:
                self._callers.clear()
            found = Caller(principal.id, principal.verified_by.value, policy.version)
            self._callers[key] = found
        return found
