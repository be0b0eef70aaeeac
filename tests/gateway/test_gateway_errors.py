"""Every gateway error maps to its gRPC status in one place; unknown errors reveal nothing."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from gateway import errors
from gateway.errors import FieldViolation, status_for


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.InvalidRequest([FieldViolation("features.amount", "bad")]), "INVALID_ARGUMENT"),
        (errors.UnknownDecisionPoint("decision_point: no route"), "NOT_FOUND"),
        (errors.UnknownModelVersion("model_version: no 9"), "NOT_FOUND"),
        (errors.RuntimeUnavailable("model m-v1 at h:1 unavailable"), "UNAVAILABLE"),
        (errors.RuntimeDeadlineExceeded("model m-v1 at h:1 too slow"), "DEADLINE_EXCEEDED"),
        (errors.RuntimeFailed("model m-v1 at h:1 failed"), "INTERNAL"),
        (errors.RuntimeRefusedInput("model m-v1 at h:1 failed: INVALID_ARGUMENT"), "INTERNAL"),
        (errors.InvalidModelOutput("model m-v1 at h:1 bad sha"), "INTERNAL"),
        (errors.CircuitOpen("model m-v1: every endpoint's circuit is open"), "UNAVAILABLE"),
        (errors.Overloaded("shed: 64 requests in flight"), "RESOURCE_EXHAUSTED"),
        (errors.ConfigError("routes.yaml: bad"), "FAILED_PRECONDITION"),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else v,
)
def test_each_error_carries_its_status_and_message(error: errors.GatewayError, code: str) -> None:
    status = status_for(error)
    assert status.code == getattr(grpc.StatusCode, code)
    assert status.details == str(error)
    rich = status_pb2.Status.FromString(dict(status.trailing_metadata)["grpc-status-details-bin"])
    assert rich.message == str(error)


def test_unknown_errors_become_internal_without_internals() -> None:
    status = status_for(KeyError("secret-table-name"))
    assert status.code == grpc.StatusCode.INTERNAL
    assert "secret" not in status.details
    assert status.details == errors.INTERNAL_MESSAGE


def test_invalid_request_carries_bad_request_field_violations() -> None:
    error = errors.InvalidRequest(
        [FieldViolation("features.amount", "got NaN"), FieldViolation("request_id", "empty")]
    )
    status = status_for(error)
    rich = status_pb2.Status.FromString(dict(status.trailing_metadata)["grpc-status-details-bin"])
    [detail] = rich.details
    bad = error_details_pb2.BadRequest()
    assert detail.Unpack(bad)
    assert [(v.field, v.description) for v in bad.field_violations] == [
        ("features.amount", "got NaN"),
        ("request_id", "empty"),
    ]
    assert "features.amount" in status.details and "request_id" in status.details
    assert rpc_status.GRPC_DETAILS_METADATA_KEY == "grpc-status-details-bin"


def test_every_error_class_is_a_gateway_error_with_a_status() -> None:
    classes = [
        c
        for c in vars(errors).values()
        if isinstance(c, type) and issubclass(c, Exception) and c.__module__ == errors.__name__
    ]
    assert all(issubclass(c, errors.GatewayError) for c in classes)
    assert all(isinstance(c.code, grpc.StatusCode) for c in classes)


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (errors.RuntimeUnavailable("x"), "unavailable"),
        (errors.CircuitOpen("x"), "circuit_open"),
        (errors.RuntimeDeadlineExceeded("x"), "timeout"),
        (errors.InvalidModelOutput("x"), "invalid_output"),
        (errors.RuntimeFailed("x"), "runtime_error"),
        (errors.RuntimeRefusedInput("x"), "runtime_error"),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else v,
)
def test_each_runtime_error_names_the_fallback_reason_it_flags(
    error: errors.ModelRuntimeError, reason: str
) -> None:
    assert error.fallback_reason == reason
