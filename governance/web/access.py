"""Each page view authenticated, authorised and logged, as ``governance.access`` does for gRPC.

The caller's principal comes from the same place as on the store's gRPC port: an
``Authorization: Bearer`` token or the connection's verified client certificate
(``security.authenticator``). Each page checks the permissions of the LineageService method it
stands for (``PAGE_PERMISSION``) under the same policy, and its entry goes to the same access log
as a gRPC call's: method ``web.<page>``, who, from where, under which permission and policy,
which decisions or which query (an entity key only as its pseudonym or sha256), and how it
ended. Refusals carry their gRPC status (``governance.status.to_status``), which
``HTTP_STATUS`` turns into the page's: 401, 403 naming the permission, 400 naming the parameter.
"""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc
from starlette.requests import Request

from governance.access import StoreAccess
from governance.audit import AccessLog
from governance.caller import CALLER, OPEN_ACCESS, Caller
from governance.pseudonyms import EntityPseudonyms
from governance.status import to_status
from governance.store.clock import now_us
from governance.store.entries import AccessEntry
from governance.web.listener import PeerCertificates
from security.policy_schema import LineagePermission as P
from security.principal import ANONYMOUS, AuthContext, Principal

HTTP_STATUS: Mapping[grpc.StatusCode, int] = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.UNAVAILABLE: 503,
}


def logged_query(params: Mapping[str, str], pseudonyms: EntityPseudonyms | None) -> dict[str, Any]:
    """The query as the access log keeps it: never an entity key (``governance.access_rules``)."""
    query = {k: v for k, v in params.items() if v}
    key = query.pop("entity_key", "")
    if key and pseudonyms is not None and pseudonyms.enabled:
        query["entity_key_pseudonym"] = pseudonyms.presented(key)
    elif key:
        query["entity_key_sha256"] = hashlib.sha256(key.encode()).hexdigest()
    return query


@dataclass(slots=True)
class PageView:
    """One page request: who, and what the access log will say it touched."""

    page: str
    peer: str
    principal: Principal = ANONYMOUS
    caller: Caller = OPEN_ACCESS
    permission: P = P.READ_DECISIONS
    decision_ids: tuple[str, ...] = ()
    query: dict[str, Any] = field(default_factory=dict)

    def require(self, *permissions: P) -> None:
        """PermissionDenied naming the first of ``permissions`` the caller lacks."""
        for permission in permissions:
            self.permission = permission
            if self.caller.policy is not None:
                self.caller.policy.check_lineage(self.principal.id, permission)

    def may(self, permission: P) -> bool:
        return self.caller.may(permission)


def _peer(request: Request) -> str:
    if request.client is None:
        return ""
    host, port = request.client
    return f"ipv6:[{host}]:{port}" if ":" in host else f"ipv4:{host}:{port}"


class PageAccess:
    def __init__(
        self,
        access: StoreAccess,
        audit: AccessLog | None,
        pseudonyms: EntityPseudonyms | None,
        peers: PeerCertificates,
    ) -> None:
        self._access = access
        self._audit = audit
        self.pseudonyms = pseudonyms
        self._peers = peers

    @property
    def open(self) -> bool:
        return self._access.open

    async def _principal(self, request: Request) -> Principal:
        authenticator = self._access.authenticator
        if authenticator is None:
            return ANONYMOUS
        headers = [("authorization", v) for v in request.headers.getlist("authorization")]
        client = request.client
        pem = self._peers.get(None if client is None else (client.host, client.port))

        def auth() -> AuthContext:
            return {"x509_pem_cert": [pem]} if pem is not None else {}

        return await authenticator.principal(headers, auth)

    @contextlib.asynccontextmanager
    async def view(self, request: Request, page: str) -> AsyncIterator[PageView]:
        """Authenticates the request and logs its entry however the page ends."""
        view = PageView(page, _peer(request))
        at = now_us()
        outcome, detail, version = "OK", "", ""
        try:
            view.principal = await self._principal(request)
            if self._access.policy is not None:
                policy = self._access.policy.current
                version = policy.version
                view.caller = Caller(view.principal, policy)
            reset = CALLER.set(view.caller)
            try:
                yield view
            finally:
                CALLER.reset(reset)
        except Exception as exc:
            code, detail = to_status(exc)
            outcome = code.name
            raise
        finally:
            if self._audit is not None:
                await self._audit.record(
                    AccessEntry(
                        access_id=str(uuid.uuid4()),
                        at_us=at,
                        principal=view.principal.id.replace("\x00", "\ufffd"),
                        verified_by=view.principal.verified_by.value,
                        peer=view.peer,
                        method=f"web.{page}",
                        permission=view.permission.value,
                        policy_version=version,
                        decision_ids=view.decision_ids,
                        query=view.query,
                        outcome=outcome,
                        detail=detail,
                    )
                )
