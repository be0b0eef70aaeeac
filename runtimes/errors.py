"""The runtime's errors, each carrying the gRPC status a caller (or the operator) sees.

::

    RuntimeServingError (INTERNAL)
    ├── ModelLoadError (FAILED_PRECONDITION)   artifact, manifest or graph disagree; the
    │                                          process refuses to serve a partial repository
    └── InvalidTensor (INVALID_ARGUMENT)       a request input is missing, unknown, mistyped or
                                               malformed; the message names the input

KServe's own server interceptor is the one place exceptions become a gRPC status: InvalidTensor is
also a ``kserve.errors.InvalidInput``, which it answers with INVALID_ARGUMENT and the message;
anything else becomes INTERNAL with a generic message. This module imports ``kserve``, so entry
points must have cleared ``sys.argv`` before importing it (KServe parses arguments at import).
"""

from __future__ import annotations

import grpc
from kserve.errors import InvalidInput


class RuntimeServingError(Exception):
    """Base of every error the runtime raises on purpose."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL


class ModelLoadError(RuntimeServingError):
    """A model version cannot be served as its manifest describes it."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class InvalidTensor(RuntimeServingError, InvalidInput):  # type: ignore[misc]
    """A request input the model cannot take; ``str(error)`` names the input."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, reason: str) -> None:
        RuntimeServingError.__init__(self, reason)
        self.reason = reason

    def __str__(self) -> str:
        return self.reason
