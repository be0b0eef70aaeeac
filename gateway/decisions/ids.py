"""Decision ids: UUIDv7 (RFC 9562), time-ordered so the lineage store's key sorts by time.

Ids made by one process are strictly increasing even within a millisecond: the 12 ``rand_a`` bits
are a counter that restarts at a random value below 2048 each millisecond (RFC 9562, method 3),
and when it runs out the timestamp borrows the next millisecond.
"""

from __future__ import annotations

import os
import secrets
import threading

_COUNTER_MAX = 0xFFF


class UuidV7Generator:
    """Monotonic UUIDv7 strings; one per process is enough."""

    __slots__ = ("_counter", "_last_ms", "_lock")

    def __init__(self) -> None:
        self._last_ms = 0
        self._counter = 0
        self._lock = threading.Lock()

    def new(self, unix_ns: int) -> str:
        """An id for an event at ``unix_ns`` (wall clock, nanoseconds since the epoch)."""
        with self._lock:
            ms, counter = self._next(unix_ns // 1_000_000)
        return _format(ms, counter, int.from_bytes(os.urandom(8)))

    def new_many(self, unix_ns: int, count: int) -> list[str]:
        """``count`` ids for events at ``unix_ns``, in order (a ScoreBatch call's rows): one
        lock and one ``urandom`` for all, cheaper per id than ``new``."""
        with self._lock:
            stamps = [self._next(unix_ns // 1_000_000) for _ in range(count)]
        randoms = os.urandom(8 * count)
        return [
            _format(ms, counter, int.from_bytes(randoms[8 * i : 8 * i + 8]))
            for i, (ms, counter) in enumerate(stamps)
        ]

    def _next(self, ms: int) -> tuple[int, int]:
        """The next (millisecond, counter) at or after ``ms``. Call with the lock held."""
        if ms > self._last_ms:
            self._last_ms = ms
            self._counter = secrets.randbits(11)
        elif self._counter < _COUNTER_MAX:
            self._counter += 1
        else:
            self._last_ms += 1
            self._counter = secrets.randbits(11)
        return self._last_ms, self._counter


def _format(ms: int, counter: int, random64: int) -> str:
    rand_b = random64 & 0x3FFF_FFFF_FFFF_FFFF
    value = (ms << 80) | (0x7 << 76) | (counter << 64) | (0b10 << 62) | rand_b
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def uuid7_unix_ms(uuid: str) -> int:
    """The millisecond timestamp inside a UUIDv7 string."""
    return int(uuid.replace("-", "")[:12], 16)
