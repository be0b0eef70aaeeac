"""CompareArms on both backends: a canary's window against its primary's, from the decisions
themselves (what the canary controller judges a step on, docs/model-risk.md)."""

from __future__ import annotations

import dataclasses
import math

from support.records import BASE_US, make_record

from governance.monitoring.arms import ArmGroup, compare_arms
from governance.monitoring.queries import DriftQueries
from governance.store import create_store
from lineage.v1.record import DecisionRecord

CANARY_NAME = "card-fraud-v2"


def _decisions(arm: str, n: int, score: float, latency_us: int, **extra: object) -> list:
    out: list[DecisionRecord] = []
    for i in range(n):
        at = BASE_US + 1_000_000 + i * 1_000
        out.append(
            make_record(
                arm=arm, model_version="2" if arm == "canary" else "1",
                received_at_us=at - latency_us, decided_at_us=at, score=score,
                decision="decline" if score > 0.85 else "approve",
                entity_key=f"cust-{arm}-{i}", **extra,
            )
        )  # fmt: skip
    return out


async def test_the_arms_of_a_window_are_compared_from_the_stored_decisions(db_url: str) -> None:
    store = create_store(db_url)
    await store.open()
    try:
        primary = _decisions("primary", 200, 0.12, latency_us=2_000)
        canary = _decisions("canary", 40, 0.91, latency_us=9_000)
        failed = [
            dataclasses.replace(
                r, arm="fallback", model_name="card-fraud-rules", model_version="rules-1",
                fallback_reason=reason, extra={"fallback_from": CANARY_NAME},
            )
            for r, reason in zip(
                _decisions("canary", 10, 0.05, latency_us=30_000),
                ["unavailable"] * 6 + ["timeout"] * 4,
                strict=True,
            )
        ]  # fmt: skip
        primary_fallback = dataclasses.replace(
            _decisions("primary", 1, 0.05, latency_us=1_000)[0],
            entity_key="cust-p-fallback", arm="fallback", fallback_reason="runtime_error",
            extra={"fallback_from": "card-fraud-v1"},
        )  # fmt: skip
        outside = dataclasses.replace(
            _decisions("canary", 1, 0.5, 1)[0], decided_at_us=BASE_US + 60_000_000
        )
        shadow = dataclasses.replace(_decisions("canary", 1, 0.5, 1)[0], arm="shadow")
        await store.insert_many([*primary, *canary, *failed, primary_fallback, outside, shadow])

        found = await DriftQueries(store).compare_arms(
            "card-fraud", BASE_US, BASE_US + 30_000_000, [CANARY_NAME]
        )
        p, c = found.primary, found.canary
        assert (p.decisions, p.fallbacks, p.errors) == (201, 1, 1)
        assert (c.decisions, c.fallbacks, c.errors) == (50, 10, 6)
        assert c.model_versions == {"2"} and p.model_versions == {"1"}
        # 10 of the canary's 50 took 30 ms: its p99 is theirs, the primary's is 2 ms.
        assert 30.0 <= c.latency_p99_ms <= 30.1
        assert 2.0 <= p.latency_p99_ms <= 2.1
        assert sum(c.score_bins) == 40 and c.score_bins[18] == 40
        assert sum(p.score_bins) == 200 and p.score_bins[2] == 200
        assert found.score_psi > 5  # disjoint bins
        assert c.decision_counts == {"decline": 40, "approve": 10}
        assert 0.7 < found.decision_mix_shift < 0.9
    finally:
        await store.close()


def test_the_same_distribution_on_both_arms_shows_no_shift() -> None:
    mix = (("approve", 1, 80), ("review", 12, 15), ("decline", 18, 5))
    groups = [
        ArmGroup(arm, "1" if arm == "primary" else "2", "", "", d, b, 20, n * scale)
        for arm, scale in (("primary", 10), ("canary", 1))
        for d, b, n in mix
    ]
    found = compare_arms(groups, [CANARY_NAME])
    assert found.score_psi == 0.0
    assert found.decision_mix_shift == 0.0
    assert found.canary.errors == 0 and found.canary.decisions == 100


def test_an_empty_arm_gives_nan_rather_than_a_false_zero() -> None:
    groups = [ArmGroup("primary", "1", "", "", "approve", 1, 20, 10)]
    found = compare_arms(groups, [CANARY_NAME])
    assert math.isnan(found.score_psi) and math.isnan(found.decision_mix_shift)
    assert found.canary.decisions == 0 and found.canary.latency_p99_ms == 0.0
