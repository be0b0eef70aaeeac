"""The approvals check's lookup over gRPC: LineageService.GetApprovals on the store.

The same address and client TLS as route changes (``--lineage-endpoint``, ``--lineage-tls*``);
the gateway's principal needs ``read_approvals``. Any failure, a refusal included, is
``ApprovalsUnavailable``: the gate then decides whether to fail closed or open.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import grpc

from gateway.routing.approvals import ApprovalState, ApprovalsUnavailable
from lineage.v1 import lineage_pb2, lineage_pb2_grpc
from security.tls import ClientTls, ReopeningChannel

CALL_TIMEOUT_S = 5.0


class StoreApprovals:
    """Create inside the running event loop; ``close`` when the gateway stops."""

    def __init__(self, endpoint: str, tls: ClientTls | None = None) -> None:
        self._endpoint = endpoint
        self._channel = ReopeningChannel(endpoint, tls)

    async def lookup(self, artifact_sha256s: Sequence[str]) -> Mapping[str, ApprovalState]:
        stub = lineage_pb2_grpc.LineageServiceStub(self._channel.channel)
        request = lineage_pb2.GetApprovalsRequest(artifact_sha256=list(artifact_sha256s))
        try:
            reply = await stub.GetApprovals(request, timeout=CALL_TIMEOUT_S)
        except grpc.aio.AioRpcError as e:
            raise ApprovalsUnavailable(
                f"lineage store at {self._endpoint}: {e.code().name} {e.details()}"
            ) from None
        return {s.artifact_sha256: ApprovalState(s.approved, s.missing) for s in reply.statuses}

    async def close(self) -> None:
        await self._channel.close()
