"""The runtime's errors, each carrying the gRPC status a caller (or the operator) sees.

::

    RuntimeServingError (INTERNAL)
    ├── ModelLoadError (FAILED_PRECONDITION)   artifact, manifest or graph disagree; the
    │                                          process refuses to serve a partial repository
    ├── InvalidTensor (INVALID_ARGUMENT)       a request input is missing, unknown, mistyped or
    │                                          malformed, or a requested output does not exist;
    │                                          the message names the tensor
    ├── UnknownVersion (NOT_FOUND)             a known model asked for by a version it does not
    │                                          serve; the message names model and version
    └── Unsupported (UNIMPLEMENTED)            an OIP v2 call the runtime does not implement

KServe's own server interceptor is the one place exceptions become a gRPC status: each class here
is also the ``kserve.errors`` class (or builtin) the interceptor answers with that status and the
message (InvalidInput, ModelNotFound, NotImplementedError); anything else becomes INTERNAL with a
generic message. This module imports ``kserve``, so entry
points must have cleared ``sys.argv`` before importing it (KServe parses arguments at import).
"""

from __future__ import annotations

import grpc
from kserve.errors import InvalidInput, ModelNotFound


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


class UnknownVersion(RuntimeServingError, ModelNotFound):  # type: ignore[misc]
    """A served model addressed with a ``model_version`` it does not serve."""

    code = grpc.StatusCode.NOT_FOUND

    def __init__(self, model: str, version: str, served: str) -> None:
        reason = f"model '{model}' has no version '{version}'; it serves version '{served}'"
        RuntimeServingError.__init__(self, reason)
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


class Unsupported(RuntimeServingError, NotImplementedError):
    """An OIP v2 call (or extension) the runtime does not implement; ``str(error)`` says why."""

    code = grpc.StatusCode.UNIMPLEMENTED

    def __init__(self, reason: str) -> None:
        RuntimeServingError.__init__(self, reason)
        self.reason = reason

    def __str__(self) -> str:
        return self.reason
