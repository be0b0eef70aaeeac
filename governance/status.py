"""The one place where the lineage store's errors become gRPC statuses.

``to_status`` maps an exception to (code, message); ``ErrorStatusInterceptor`` applies it to every
unary call of the server, so servicers simply raise. The security package's errors (refused
credentials, a permission the policy does not grant) carry their status like ``LineageError``
does. Anything else is logged with its traceback and reported as INTERNAL with a generic
message.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from governance.errors import LineageError
from security.errors import SecurityError

log = logging.getLogger(__name__)

INTERNAL_MESSAGE = "internal error in the lineage store"


def to_status(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    if isinstance(exc, LineageError | SecurityError):
        return exc.code, str(exc)
    return grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE


class ErrorStatusInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Aborts unary calls that raise with the status ``to_status`` gives."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        method = handler_call_details.method
        inner = handler.unary_unary

        async def guarded(request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                return await inner(request, context)
            except grpc.aio.AbortError:
                raise
            except Exception as exc:
                code, message = to_status(exc)
                if code == grpc.StatusCode.INTERNAL:
                    log.exception("%s failed", method)
                await context.abort(code, message)

        return grpc.unary_unary_rpc_method_handler(
            guarded,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
