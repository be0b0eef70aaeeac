"""The CLI's side of lineage.v1.LineageService: one call, and what its failure means to a user.

Exit codes shared by every ``scoregate lineage`` subcommand that talks to the store: 0 done,
1 the store answered no (not found, invalid, conflict), 2 unreachable or failed.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
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
        with grpc.insecure_channel(address) as channel:
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
