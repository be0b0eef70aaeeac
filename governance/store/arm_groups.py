"""The decisions of a window grouped for ``governance.monitoring.arms``, in SQL.

One grouped scan over the decisions' (decision_point, decided_at) index, so a window of a busy
decision point returns a few thousand groups rather than every decision. ``fallback_from`` is
read from the record's JSON only for fallback decisions, which are few.
"""

from __future__ import annotations

from governance.monitoring.arms import LATENCY_STEP_US, ArmGroup
from governance.monitoring.windows import SHARED_SCORE_BINS
from governance.store.engine import Connection

_FALLBACK_FROM: dict[str, str] = {
    "sqlite": "json_extract(record_json, '$.extra.fallback_from')",
    "postgresql": "((record_json::json -> 'extra') ->> 'fallback_from')",
}
# Rounded down on both backends (PostgreSQL's integer cast would round to nearest).
_SCORE_BIN: dict[str, str] = {
    "sqlite": f"CAST(score * {SHARED_SCORE_BINS} AS INTEGER)",
    "postgresql": f"CAST(FLOOR(score * {SHARED_SCORE_BINS}) AS INTEGER)",
}


def arm_groups(
    db: Connection, dialect: str, decision_point: str, since_us: int, until_us: int
) -> list[ArmGroup]:
    fallback_from = f"CASE WHEN arm = 'fallback' THEN {_FALLBACK_FROM[dialect]} ELSE '' END"
    score_bin = _SCORE_BIN[dialect]
    latency = f"(decided_at_us - received_at_us) / {LATENCY_STEP_US}"
    rows = db.execute(
        f"SELECT arm, model_version, fallback_reason, {fallback_from}, decision, {score_bin}, "
        f"{latency}, COUNT(*) FROM decisions "
        "WHERE decision_point = ? AND decided_at_us >= ? AND decided_at_us < ? "
        "AND arm IN ('primary', 'canary', 'fallback') "
        "GROUP BY 1, 2, 3, 4, 5, 6, 7",
        (decision_point, since_us, until_us),
    ).fetchall()
    return [
        ArmGroup(r[0], r[1], r[2], r[3] or "", r[4], int(r[5]), int(r[6]), int(r[7])) for r in rows
    ]
