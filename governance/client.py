"""The CLI's side of lineage.v1.LineageService: one call, and what its failure means to a user.

Exit codes shared by every ``scoregate lineage`` subcommand that talks to the store: 0 done,
1 the store answered no (not found, invalid, conflict, refused credentials or permission), 2
unreachable or failed.

A store behind TLS and an access policy is reached with the environment a subcommand is run
in (read when it calls, so each command's flags stay about the question asked):
``SCOREGATE_LINEAGE_CA_FILE`` (the CA bundle that verifies the store; set it to use TLS),
``SCOREGATE_LINEAGE_CERT_FILE`` and ``SCOREGATE_LINEAGE_KEY_FILE`` (a client certificate,
for mutual TLS), ``SCOREGATE_LINEAGE_TOKEN_FILE`` (a file holding a bearer token) and
``SCOREGATE_LINEAGE_SERVER_NAME`` (the name the store's certificate carries, if not the host).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import grpc

from lineage.v1 import lineage_pb2_grpc

T = TypeVar("T")

EXIT_NO = 1
EXIT_UNREACHABLE = 2
_NO = (
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
)


class CliExit(Exception):
    """Stops a subcommand with an exit code; the message is already printed."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def fail(prog: str, message: str, code: int = EXIT_NO) -> CliExit:
    print(f"{prog}: {message}", file=sys.stderr)
    return CliExit(code)


def call(
    prog: str,
    address: str,
    fn: Callable[[lineage_pb2_grpc.LineageServiceStub], T],
) -> T:
    """Runs ``fn`` with a stub on a fresh channel; gRPC failures become a message and CliExit."""
    try:
        with _channel(address) as channel:
            return fn(lineage_pb2_grpc.LineageServiceStub(channel))
    except grpc.RpcError as e:
        code, details = e.code(), e.details()
        if code in _NO:
            raise fail(prog, str(details)) from None
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            raise fail(
                prog, f"lineage store at {address} unreachable: {details}", EXIT_UNREACHABLE
            ) from None
        raise fail(prog, f"lineage store error {code.name}: {details}", EXIT_UNREACHABLE) from None


def _file(name: str) -> bytes | None:
    path = os.environ.get(name, "")
    return Path(path).read_bytes() if path else None


def _channel(address: str) -> grpc.Channel:
    ca = _file("SCOREGATE_LINEAGE_CA_FILE")
    token = _file("SCOREGATE_LINEAGE_TOKEN_FILE")
    if ca is None:
        if token is not None:
            raise OSError("SCOREGATE_LINEAGE_TOKEN_FILE needs TLS: set SCOREGATE_LINEAGE_CA_FILE")
        return grpc.insecure_channel(address)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca,
        private_key=_file("SCOREGATE_LINEAGE_KEY_FILE"),
        certificate_chain=_file("SCOREGATE_LINEAGE_CERT_FILE"),
    )
    if token is not None:
        credentials = grpc.composite_channel_credentials(
            credentials, grpc.access_token_call_credentials(token.decode().strip())
        )
    name = os.environ.get("SCOREGATE_LINEAGE_SERVER_NAME", "")
    options = [("grpc.ssl_target_name_override", name)] if name else []
    return grpc.secure_channel(address, credentials, options=options)
