"""The store's clock: every time it keeps is UTC microseconds since the epoch."""

from __future__ import annotations

import time


def now_us() -> int:
    return time.time_ns() // 1000
