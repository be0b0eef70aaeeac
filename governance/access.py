"""Every call to the store authenticated, authorised and logged, in one server interceptor.

For each method of ``governance.access_rules``: the caller's principal is read from its bearer
token or client certificate (``security.authenticator``), the access policy in force is checked
for each permission the call needs (deny by default), the ``Caller`` is set for the servicer
(``governance.caller``), and the call's entry (who, when, from where, which method under which
permission and policy, which decisions or query, how it ended) goes to the access log. Refusals
are raised as the security package's errors, which ``governance.status.to_status`` maps to
UNAUTHENTICATED and PERMISSION_DENIED: this interceptor runs inside the error interceptor.

With open access (``--open-access``) nobody is authenticated and everything is allowed, but
every call is still logged, as principal '' verified by ``none``.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from governance.access_rules import GUARDED_SERVICES, RULES
from governance.audit import AccessLog
from governance.caller import CALLER, OPEN_ACCESS, Caller
from governance.errors import AccessRuleMissing
from governance.pseudonyms import EntityPseudonyms
from governance.status import to_status
from governance.store.clock import now_us
from governance.store.entries import AccessEntry
from security.authenticator import Authenticator
from security.policy_reload import PolicyWatcher
from security.principal import ANONYMOUS, Principal


class StoreAccess:
    """``authenticator`` and ``policy`` together, or neither (open access)."""

    def __init__(
        self, authenticator: Authenticator | None = None, policy: PolicyWatcher | None = None
    ) -> None:
        if (authenticator is None) != (policy is None):
            raise ValueError("authentication and an access policy go together")
        self.authenticator = authenticator
        self.policy = policy

    @property
    def open(self) -> bool:
        return self.authenticator is None

    async def principal(self, context: grpc.aio.ServicerContext[Any, Any]) -> Principal:
        if self.authenticator is None:
            return ANONYMOUS
        return await self.authenticator.principal(
            context.invocation_metadata(), context.auth_context
        )


async def _no_rule(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
    raise AccessRuleMissing(f"{context.peer()}: this method has no access rule")


class AccessInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(
        self,
        access: StoreAccess,
        audit: AccessLog | None,
        pseudonyms: EntityPseudonyms | None = None,
    ) -> None:
        self._access = access
        self._audit = audit
        self._pseudonyms = pseudonyms

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        rule = RULES.get(method)
        if handler is None or (rule is None and not method.startswith(GUARDED_SERVICES)):
            return handler
        if rule is None or handler.unary_unary is None:
            # A method added to the API without its row in access_rules: refused, not open.
            return grpc.unary_unary_rpc_method_handler(
                _no_rule, handler.request_deserializer, handler.response_serializer
            )
        inner = handler.unary_unary
        access, audit, pseudonyms = self._access, self._audit, self._pseudonyms

        async def checked(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            at = now_us()
            principal, permission, version = ANONYMOUS, rule.permission, ""
            outcome, detail = "OK", ""
            try:
                principal = await access.principal(context)
                caller = OPEN_ACCESS
                if access.policy is not None:
                    policy = access.policy.current
                    version = policy.version
                    for permission in rule.needs(request):
                        policy.check_lineage(principal.id, permission)
                    caller = Caller(principal, policy)
                CALLER.set(caller)
                return await inner(request, context)
            except grpc.aio.AbortError:
                code = context.code()
                outcome = code.name if isinstance(code, grpc.StatusCode) else "ABORTED"
                raise
            except asyncio.CancelledError:
                outcome = "CANCELLED"  # the caller went away or its deadline passed
                raise
            except Exception as exc:
                code, detail = to_status(exc)
                outcome = code.name
                raise
            finally:
                if audit is not None and (outcome != "OK" or not rule.audit_refusals_only):
                    await audit.record(
                        AccessEntry(
                            access_id=str(uuid.uuid4()),
                            at_us=at,
                            # PostgreSQL's text cannot hold NUL: an entry with one would be
                            # refused at every flush, and the log would stop there.
                            principal=principal.id.replace("\x00", "\ufffd"),
                            verified_by=principal.verified_by.value,
                            peer=context.peer(),
                            method=rule.name,
                            permission=permission.value,
                            policy_version=version,
                            decision_ids=rule.decision_ids(request),
                            query=rule.query(request, pseudonyms),
                            outcome=outcome,
                            detail=detail,
                        )
                    )

        return grpc.unary_unary_rpc_method_handler(
            checked,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
