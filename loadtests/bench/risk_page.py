"""The risk page's latency on the benchmark's store: each page asked one at a time over HTTP
from the same machine, as a risk officer's browser would, timed to the last byte (p50/p99).

Pages: a search by entity key, a search by decision point and principal reason, a decision's
page, a decision point's serving timeline over the month, and its drift view over the last week
in daily steps.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime

import httpx

from lineage.v1.record import DecisionRecord

DAY_US = 86_400_000_000


def _iso(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, UTC).isoformat()


def _percentiles(samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return f"p50 {statistics.median(ms):7.2f} ms   p99 {p99:7.2f} ms   ({len(ms)} pages)"


def time_pages(web: str, records: list[DecisionRecord], calls: int) -> dict[str, str]:
    """p50/p99 per page, ``calls`` views of each, after a warm-up."""
    rng = random.Random(3)
    first = min(r.decided_at_us for r in records)
    last = max(r.decided_at_us for r in records) + 1
    week = {"since": _iso(last - 7 * DAY_US), "until": _iso(last), "step_hours": "24"}
    pages: dict[str, Callable[[], tuple[str, dict[str, str]]]] = {
        "search by entity key": lambda: ("", {"entity_key": rng.choice(records).entity_key}),
        "search by point and reason": lambda: (
            "",
            {"decision_point": "card-fraud", "reason_code": rng.choice(records).reasons[0].code},
        ),
        "decision page": lambda: (f"decisions/{rng.choice(records).decision_id}", {}),
        "serving timeline, 30 days": lambda: (
            "timeline",
            {"decision_point": "card-fraud", "since": _iso(first), "until": _iso(last)},
        ),
        "drift view, 7 daily windows": lambda: ("drift", {"decision_point": "card-fraud", **week}),
    }
    found: dict[str, str] = {}
    with httpx.Client(base_url=web, timeout=60) as client:
        for name, ask in pages.items():
            for _ in range(5):  # warm-up: connection, the database's caches
                path, params = ask()
                client.get(path, params=params).raise_for_status()
            samples = []
            for _ in range(calls):
                path, params = ask()
                started = time.perf_counter()
                client.get(path, params=params).raise_for_status()
                samples.append(time.perf_counter() - started)
            found[name] = _percentiles(samples)
    return found
