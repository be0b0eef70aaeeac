"""Waiting on a condition instead of sleeping for a guessed time.

A test that sleeps "long enough" for something to happen is slow when the guess is generous and
flaky when the machine is slower than the guess. These helpers poll an observation (a metric, a
store query, a log tail, a file) every ``interval_s`` until it satisfies ``until``, and return
the observation that did. On timeout they raise ``AssertionError`` naming what was awaited and
the last value observed, so a failure says what did not happen rather than that a later
assertion saw a half-finished state.

``wait_until`` blocks the thread: use it from synchronous tests. From a coroutine use
``wait_until_async`` (its check may be a plain function or a coroutine function), so the event
loop keeps running the tasks that are meant to make the condition true.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

T = TypeVar("T")

INTERVAL_S = 0.02
_REPR_LIMIT = 300


def _describe(value: object, describe: Callable[[Any], str] | None) -> str:
    if describe is not None:
        return describe(value)
    text = repr(value)
    return text if len(text) <= _REPR_LIMIT else f"{text[:_REPR_LIMIT]}... ({len(text)} chars)"


def _timed_out(
    what: str, timeout_s: float, value: object, describe: Callable[[Any], str] | None
) -> AssertionError:
    return AssertionError(
        f"timed out after {timeout_s:g} s waiting for {what}; "
        f"last observed: {_describe(value, describe)}"
    )


def wait_until(
    check: Callable[[], T],
    timeout_s: float,
    what: str,
    *,
    until: Callable[[T], object] = bool,
    interval_s: float = INTERVAL_S,
    describe: Callable[[T], str] | None = None,
) -> T:
    """Calls ``check()`` every ``interval_s`` until ``until(value)`` is true; returns that value.

    ``check`` is always called at least once, and once more at or after the deadline, so a
    condition that became true during the last interval is not reported as a timeout.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if until(value):
            return value
        if time.monotonic() >= deadline:
            raise _timed_out(what, timeout_s, value, describe)
        time.sleep(min(interval_s, max(0.0, deadline - time.monotonic())))


@overload
async def wait_until_async(
    check: Callable[[], Awaitable[T]],
    timeout_s: float,
    what: str,
    *,
    until: Callable[[T], object] = ...,
    interval_s: float = ...,
    describe: Callable[[T], str] | None = ...,
) -> T: ...


@overload
async def wait_until_async(
    check: Callable[[], T],
    timeout_s: float,
    what: str,
    *,
    until: Callable[[T], object] = ...,
    interval_s: float = ...,
    describe: Callable[[T], str] | None = ...,
) -> T: ...


async def wait_until_async(
    check: Callable[[], Any],
    timeout_s: float,
    what: str,
    *,
    until: Callable[[Any], object] = bool,
    interval_s: float = INTERVAL_S,
    describe: Callable[[Any], str] | None = None,
) -> Any:
    """``wait_until`` for coroutines: awaits ``check()`` if it returns an awaitable, and waits
    between polls with ``asyncio.sleep``, so other tasks on the loop run meanwhile."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if until(value):
            return value
        if time.monotonic() >= deadline:
            raise _timed_out(what, timeout_s, value, describe)
        await asyncio.sleep(min(interval_s, max(0.0, deadline - time.monotonic())))
