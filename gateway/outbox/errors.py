"""The outbox's errors, in the gateway's tree (``gateway.errors``) so a caller gets a status.

::

    GatewayError
    └── OutboxError (UNAVAILABLE)        the record was not made durable; the decision is not given
        ├── OutboxFull (RESOURCE_EXHAUSTED)   the un-acknowledged bound is reached: shed, not lost
        └── OutboxClosed                      the outbox is stopping or its writer failed

``OutboxCorrupt`` is not a caller's error: recovery and the sender raise it internally when a
segment's bytes fail their length or crc check.
"""

from __future__ import annotations

import grpc

from gateway.errors import GatewayError


class OutboxError(GatewayError):
    """The decision record could not be made durable, so the decision is not answered."""

    code = grpc.StatusCode.UNAVAILABLE


class OutboxFull(OutboxError):
    """Un-acknowledged records reached the outbox's bound; new decisions are shed until the
    lineage store catches up (no record already accepted is ever dropped)."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class OutboxClosed(OutboxError):
    """The outbox is closed, or its writer hit an I/O error and refuses further appends."""


class OutboxCorrupt(Exception):
    """A segment's bytes fail the frame checks (length or crc) where they should not."""
