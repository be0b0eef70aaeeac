"""The gateway's errors, each carrying the gRPC status a caller receives.

::

    GatewayError (INTERNAL)
    ├── InvalidRequest (INVALID_ARGUMENT)       the first field violations, and their count
    ├── NotFound (NOT_FOUND)
    │   ├── UnknownDecisionPoint
    │   └── UnknownModelVersion                 a pinned model_version the model does not have
    ├── ModelRuntimeError                       a model runtime did not give a usable answer
    │   ├── RuntimeUnavailable (UNAVAILABLE)    refused, not serving the model, overloaded
    │   │   └── CircuitOpen                     every endpoint's circuit is open: not even tried
    │   ├── RuntimeDeadlineExceeded (DEADLINE_EXCEEDED)
    │   ├── RuntimeFailed (INTERNAL)            any other runtime status
    │   │   └── RuntimeRefusedInput             INVALID_ARGUMENT, OUT_OF_RANGE: the call's inputs
    │   └── InvalidModelOutput (INTERNAL)       no score, or not the artifact the manifest names
    ├── Overloaded (RESOURCE_EXHAUSTED)         shed: the gateway's in-flight bound is reached
    ├── Stopping (UNAVAILABLE)                  the gateway is draining: go to another replica
    └── ConfigError (FAILED_PRECONDITION)       routing config refused (start-up or reload)

    security.errors.SecurityError               the shared security package's tree, mapped here
    ├── AuthenticationFailed (UNAUTHENTICATED)  no credentials, or ones that do not verify
    ├── PermissionDenied (PERMISSION_DENIED)    names the permission the caller lacks
    └── SecurityConfigError (FAILED_PRECONDITION)

A ModelRuntimeError's ``fallback_reason`` is the flag a fallback answer carries.

``status_for`` is the one place an exception becomes a ``grpc.Status``; anything that is neither
a GatewayError nor a SecurityError becomes INTERNAL with a generic message (the caller sees no
internals).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2  # type: ignore[import-untyped]
from grpc_status import rpc_status

from gateway.limits import MAX_MESSAGE_BYTES, MAX_VIOLATIONS_SHOWN
from security.errors import SecurityError

INTERNAL_MESSAGE = "internal error; the gateway log has the details"
MAX_FIELD_BYTES = 128
MAX_DESCRIPTION_BYTES = 240
"""A violation's field and description in the BadRequest details, UTF-8. With the message this
bounds a refusal's trailers: the message percent-encoded (<= 1 KiB), and base64 of a Status that
holds it again with 8 violations (<= 4/3 * ~4 KiB): ~6.5 KiB, under a client's 8 KiB."""


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One offending request field: ``field`` is a path such as ``features.amount``."""

    field: str
    description: str


class GatewayError(Exception):
    """Base of every error the gateway reports to a caller."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    @property
    def message(self) -> str:
        """What the caller reads: bounded, whatever the cause quoted."""
        return _cut(str(self), MAX_MESSAGE_BYTES, _message_bytes)

    def details(self) -> Sequence[any_pb2.Any]:
        """Rich error details (google.rpc) sent alongside the status."""
        return ()


def _bounded(violation: FieldViolation) -> FieldViolation:
    field, description = violation.field, violation.description
    if _utf8_bytes(field) <= MAX_FIELD_BYTES and _utf8_bytes(description) <= MAX_DESCRIPTION_BYTES:
        return violation
    return FieldViolation(
        _cut(field, MAX_FIELD_BYTES, _utf8_bytes),
        _cut(description, MAX_DESCRIPTION_BYTES, _utf8_bytes),
    )


def _utf8_bytes(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode(errors="replace"))


def _message_bytes(text: str) -> int:
    """``text``'s size as a grpc-message: UTF-8, each byte outside printable ASCII, and ``%``,
    percent-encoded (three bytes)."""
    if text.isascii() and text.isprintable() and "%" not in text:
        return len(text)  # the common case: sent as it is
    data = text.encode(errors="replace")
    escaped = sum(1 for b in data if b < 0x20 or b > 0x7E or b == 0x25)
    return len(data) + 2 * escaped


def _cut(text: str, limit: int, size: Callable[[str], int]) -> str:
    """``text``, or as much of it as fits in ``limit`` (as measured by ``size``) with "..."."""
    if len(text) <= limit and size(text) <= limit:
        return text
    budget = limit - 3
    for end, char in enumerate(text):
        budget -= size(char)
        if budget < 0:
            return text[:end] + "..."
    return text  # unreachable: the whole text did not fit


class InvalidRequest(GatewayError):
    """The request breaks the API or the model's feature schema; each field shown is named.

    ``violations`` are the first ``MAX_VIOLATIONS_SHOWN`` (what the caller is shown), ``count``
    is how many problems there are in all: a request with thousands of them is refused at the
    cost of the few it is told about (``Violations`` collects them so).
    """

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, violations: Sequence[FieldViolation], count: int = 0) -> None:
        self.violations = tuple(violations[:MAX_VIOLATIONS_SHOWN])
        self.count = max(count, len(violations))
        # The plain message names the fields too: clients without rich status still see them.
        # Both are bounded so that the refusal fits in a default client's metadata limit.
        shown = [_bounded(v) for v in self.violations]
        text = "; ".join(f"{v.field}: {v.description}" for v in shown)
        head = f"invalid request ({self.count} problems, {len(shown)} shown): "
        super().__init__((head if self.count > len(shown) else "invalid request: ") + text)

    def details(self) -> Sequence[any_pb2.Any]:
        violation = error_details_pb2.BadRequest.FieldViolation
        bad = error_details_pb2.BadRequest(
            field_violations=[
                violation(field=v.field, description=v.description)
                for v in map(_bounded, self.violations)
            ]
        )
        packed = any_pb2.Any()
        packed.Pack(bad)
        return (packed,)


class Violations:
    """A refusal's violations as they are found: the first ``MAX_VIOLATIONS_SHOWN`` are kept,
    the rest only counted, so that refusing costs what is shown, however much is wrong."""

    __slots__ = ("count", "shown")

    def __init__(self) -> None:
        self.shown: list[FieldViolation] = []
        self.count = 0

    def __bool__(self) -> bool:
        return self.count > 0

    @property
    def room(self) -> int:
        """How many more violations would be shown: describe only that many."""
        return MAX_VIOLATIONS_SHOWN - len(self.shown)

    def add(self, field: str, description: str) -> None:
        self.count += 1
        if len(self.shown) < MAX_VIOLATIONS_SHOWN:
            self.shown.append(FieldViolation(field, description))

    def add_counted(self, problems: int) -> None:
        """Problems found beyond ``room``: counted, never described."""
        self.count += problems

    def error(self) -> InvalidRequest:
        return InvalidRequest(self.shown, self.count)


class NotFound(GatewayError):
    code = grpc.StatusCode.NOT_FOUND


class UnknownDecisionPoint(NotFound):
    """No route for the request's decision point."""


class UnknownModelVersion(NotFound):
    """A pinned ``model_version`` that the routed model does not have."""


class ModelRuntimeError(GatewayError):
    """A model runtime did not give a usable answer; the message names model and endpoint."""

    fallback_reason = "runtime_error"


class RuntimeUnavailable(ModelRuntimeError):
    code = grpc.StatusCode.UNAVAILABLE
    fallback_reason = "unavailable"


class CircuitOpen(RuntimeUnavailable):
    """Every endpoint of the model version has an open circuit; the runtime was not called."""

    fallback_reason = "circuit_open"


class RuntimeDeadlineExceeded(ModelRuntimeError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED
    fallback_reason = "timeout"


class RuntimeFailed(ModelRuntimeError):
    code = grpc.StatusCode.INTERNAL
    fallback_reason = "runtime_error"


class RuntimeRefusedInput(RuntimeFailed):
    """The runtime refused the call's inputs (INVALID_ARGUMENT, OUT_OF_RANGE): rows the gateway
    accepted but the runtime did not, so one row may be the cause. Micro-batching re-sends the
    rows of a refused batch alone, so that only the refused rows fail."""


class InvalidModelOutput(ModelRuntimeError):
    """The runtime answered, but not with a score from the artifact the manifest names."""

    code = grpc.StatusCode.INTERNAL
    fallback_reason = "invalid_output"


class Overloaded(GatewayError):
    """Shed at admission: the gateway already has its bound of requests in flight."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Stopping(GatewayError):
    """The gateway is stopping: it admits no new request (the caller retries elsewhere)."""

    code = grpc.StatusCode.UNAVAILABLE


class ConfigError(GatewayError):
    """The routing config is refused; the message starts with the offending path."""

    code = grpc.StatusCode.FAILED_PRECONDITION


def status_for(error: BaseException) -> grpc.Status:
    """The status a caller receives for ``error``, rich details included."""
    if isinstance(error, GatewayError):
        code, message, details = error.code, error.message, error.details()
    elif isinstance(error, SecurityError):
        code, message, details = error.code, _cut(str(error), MAX_MESSAGE_BYTES, _message_bytes), ()
    else:
        code, message, details = grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE, ()
    status = status_pb2.Status(
        code=getattr(code_pb2, code.name), message=message, details=list(details)
    )
    result: grpc.Status = rpc_status.to_status(status)
    return result
