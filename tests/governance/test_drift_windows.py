"""Counting decisions into hourly windows: what a shifted input does to that feature's PSI and
nothing else's, and what a day's counts are made of."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from support.records import BASE_US, make_record

from governance.monitoring import drift, measures, windows
from runtimes.manifest import Manifest, load_manifests
from runtimes.training.datasets import sample_requests


def _manifest(model_dir: Path) -> Manifest:
    return load_manifests(model_dir)[("credit-risk", "1")]


def _records(rows: list[dict[str, object]], start_us: int, arm: str = "primary") -> list:
    out = []
    for i, row in enumerate(rows):
        snapshot = {k: v if isinstance(v, bool | str) else float(v) for k, v in row.items()}
        out.append(
            make_record(
                decision_point="credit-risk", model_name="credit-risk", model_version="1",
                features=snapshot, decided_at_us=start_us + i * 1_000_000,
                received_at_us=start_us + i * 1_000_000 - 2_000, score=0.2, decision="approve",
                arm=arm,
            )
        )  # fmt: skip
    return out


def _psi(counts: windows.Counts, key: windows.WindowKey, m: Manifest, measure: str) -> float:
    slots, expected = windows.baseline_slots(m.baselines[measure])
    actual = [counts[(key, measure, s)] for s in slots]
    return measures.psi(expected, actual)


def test_a_shifted_feature_moves_its_own_psi_past_the_rule(model_dir: Path) -> None:
    manifest = _manifest(model_dir)
    hour = windows.hour_of(BASE_US)
    rows = sample_requests("credit-risk", 2_000, seed=31)
    steady = windows.count(_records(rows, hour), {("credit-risk", "1"): manifest})
    shifted_rows = [{**r, "debt_to_income": float(r["debt_to_income"]) * 2.5} for r in rows]
    shifted = windows.count(_records(shifted_rows, hour), {("credit-risk", "1"): manifest})
    key = windows.WindowKey("credit-risk", "credit-risk", "1", "primary", hour)
    for feature in ("annual_income", "employment_type", "home_owner", "age"):
        assert _psi(steady, key, manifest, feature) < 0.1, feature
        assert _psi(shifted, key, manifest, feature) < 0.1, feature
    assert _psi(steady, key, manifest, "debt_to_income") < 0.1
    assert _psi(shifted, key, manifest, "debt_to_income") > 0.25
    # Every decision is counted once per measure (plus its out-of-range count).
    assert steady[(key, windows.DECISION, "approve")] == 2_000
    in_bins = sum(steady[(key, "annual_income", str(i))] for i in range(10))
    assert in_bins + steady[(key, "annual_income", windows.MISSING)] == 2_000
    assert shifted[(key, "debt_to_income", windows.OUT_OF_RANGE)] == 0
    beyond = {**rows[0], "debt_to_income": 1e6}
    far = windows.count(_records([beyond], hour), {("credit-risk", "1"): manifest})
    assert far[(key, "debt_to_income", windows.OUT_OF_RANGE)] == 1
    assert far[(key, "debt_to_income", "9")] == 1


def test_windows_are_hours_and_a_day_is_their_sum(model_dir: Path) -> None:
    manifest = _manifest(model_dir)
    start = windows.hour_of(BASE_US)
    rows = sample_requests("credit-risk", 7_200, seed=5)
    # One decision a second for two hours, half on the canary arm.
    records = _records(rows[:3_600], start) + _records(rows[3_600:], start + windows.HOUR_US)
    records += _records(rows[:100], start, arm="canary")
    counts = windows.count(records, {("credit-risk", "1"): manifest})
    hours = sorted({k.hour_us for k, _, _ in counts})
    assert hours == [start, start + windows.HOUR_US]
    arms = {k.arm for k, _, _ in counts}
    assert arms == {"primary", "canary"}
    first = windows.WindowKey("credit-risk", "credit-risk", "1", "primary", start)
    assert counts[(first, windows.DECISION, "approve")] == 3_600
    day = sum(n for (k, m, s), n in counts.items() if k.arm == "primary" and m == windows.DECISION)
    assert day == 7_200
    # A fallback's decisions, and an unknown version's, are not counted.
    other = _records(rows[:10], start)
    assert not windows.count(other, {})
    fallback = [dataclasses.replace(r, fallback_reason="timeout") for r in other]
    assert not windows.count(fallback, {("credit-risk", "1"): manifest})
    assert np.isfinite(_psi(counts, first, manifest, windows.SCORE))


def _for(counts: windows.Counts, key: windows.WindowKey) -> dict[tuple[str, str], int]:
    return {(m, s): n for (k, m, s), n in counts.items() if k == key}


def test_the_drift_report_names_the_shifted_feature_and_compares_arms(model_dir: Path) -> None:
    manifest = _manifest(model_dir)
    hour = windows.hour_of(BASE_US)
    rows = sample_requests("credit-risk", 3_000, seed=8)
    shifted = [
        {**r, "employment_type": "unemployed"} if i % 3 == 0 else r for i, r in enumerate(rows)
    ]
    records = _records(rows, hour) + _records(shifted, hour, arm="canary")
    # The canary scores higher: its scores come from another distribution.
    records = [
        dataclasses.replace(r, score=min(1.0, 0.2 + 0.5 * (r.arm == "canary") * (i % 2)))
        for i, r in enumerate(records)
    ]
    counts = windows.count(records, {("credit-risk", "1"): manifest})
    key = windows.WindowKey("credit-risk", "credit-risk", "1", "primary", hour)
    canary = dataclasses.replace(key, arm="canary")
    steady = drift.drift_report(manifest, _for(counts, key))
    moved = drift.drift_report(manifest, _for(counts, canary))
    assert steady.decisions == moved.decisions == 3_000
    assert steady.decision_mix == {"approve": 1.0}
    by_name = {m.measure: m for m in moved.features}
    assert by_name["employment_type"].band == "significant"
    assert by_name["employment_type"].chi_square_p < 1e-6
    assert 0 < by_name["employment_type"].jensen_shannon <= 1
    assert [m.measure for m in moved.significant if m.kind != "score"] == ["employment_type"]
    assert all(m.band != "significant" for m in steady.features)
    assert by_name["age"].missing_share == 0.0
    primary_counts, canary_counts = _for(counts, key), _for(counts, canary)
    assert drift.arm_score_psi(primary_counts, primary_counts) == 0.0
    assert drift.arm_score_psi(primary_counts, canary_counts) > 0.25
