"""ScoringService's method handlers: each request's size checked and its body parsed here.

gRPC's generated registration parses with ``FromString``, so a body that does not parse (random
bytes, a truncated message, invalid UTF-8 in a string) fails inside gRPC as UNKNOWN, with a
traceback per call. Here the size is checked before parsing and a parse failure becomes a
``Malformed`` request, which the servicer refuses with INVALID_ARGUMENT; such calls are logged at
most once a minute, with their count.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from google.protobuf.message import DecodeError, Message

from gateway.limits import MAX_SCORE_BATCH_BYTES, MAX_SCORE_BYTES
from scoring.v1 import scoring_pb2

log = logging.getLogger(__name__)

SERVICE = scoring_pb2.DESCRIPTOR.services_by_name["ScoringService"].full_name
MAX_RECEIVE_BYTES = 16 * 1024 * 1024
"""gRPC's own bound (it refuses larger messages with RESOURCE_EXHAUSTED before we see them): above
the methods' limits, so that a request too large for its method is told so by name."""
LOG_INTERVAL_S = 60.0

M = TypeVar("M", bound=Message)


@dataclass(frozen=True, slots=True)
class Malformed:
    """A request body refused before parsing or by the parser; ``reason`` says which."""

    reason: str


class _MalformedLog:
    """One warning per interval for malformed bodies, however many arrive."""

    def __init__(self) -> None:
        self._since = 0
        self._last = 0.0

    def seen(self, reason: str) -> None:
        self._since += 1
        now = time.monotonic()
        if now - self._last >= LOG_INTERVAL_S:
            log.warning(
                "refused %d malformed request body(ies) since the last report, e.g.: %s",
                self._since,
                reason,
            )
            self._since, self._last = 0, now


_malformed = _MalformedLog()


def parser(message: type[M], limit: int, method: str) -> Callable[[bytes], M | Malformed]:
    name = message.DESCRIPTOR.full_name

    def parse(data: bytes) -> M | Malformed:
        if len(data) > limit:
            reason = f"a request of {len(data):,} bytes; at most {limit:,} for {method}"
        else:
            try:
                return message.FromString(data)
            except DecodeError:
                reason = f"the request body does not parse as {name}"
        _malformed.seen(reason)
        return Malformed(reason)

    return parse


def add_scoring_service(servicer: Any, server: grpc.aio.Server) -> None:
    """Registers ``servicer``'s Score and ScoreBatch with the parsers above."""
    handlers = {
        "Score": grpc.unary_unary_rpc_method_handler(
            servicer.Score,
            request_deserializer=parser(scoring_pb2.ScoreRequest, MAX_SCORE_BYTES, "Score"),
            response_serializer=scoring_pb2.ScoreResponse.SerializeToString,
        ),
        "ScoreBatch": grpc.unary_unary_rpc_method_handler(
            servicer.ScoreBatch,
            request_deserializer=parser(
                scoring_pb2.ScoreBatchRequest, MAX_SCORE_BATCH_BYTES, "ScoreBatch"
            ),
            response_serializer=scoring_pb2.ScoreBatchResponse.SerializeToString,
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)
