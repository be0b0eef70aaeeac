"""The monitoring counters in the store, on SQLite and PostgreSQL: counted at ingest in the
decisions' own transaction, summed back per window, and a shifted canary seen in its drift."""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

from support.records import BASE_US, make_record

from governance.monitoring import windows
from governance.monitoring.queries import DriftQueries
from governance.store import create_store
from governance.store.entries import RegisteredManifest
from lineage.v1.record import DecisionRecord
from runtimes.manifest import Manifest, find_model_folders, read_manifest
from runtimes.training.datasets import sample_requests

HOUR = windows.HOUR_US


def _credit_risk(model_dir: Path) -> tuple[Manifest, str]:
    for folder in find_model_folders(model_dir):
        m = read_manifest(folder)
        if (m.name, m.version) == ("credit-risk", "1"):
            return m, (folder / "manifest.json").read_text()
    raise AssertionError("no credit-risk v1")


def _records(
    manifest: Manifest, n: int, start_us: int, arm: str, seed: int
) -> list[DecisionRecord]:
    out = []
    for i, row in enumerate(sample_requests("credit-risk", n, seed=seed)):
        snapshot = {k: v if isinstance(v, bool | str) else float(v) for k, v in row.items()}
        if arm == "canary":
            snapshot["debt_to_income"] = float(snapshot["debt_to_income"]) * 2.5
        at = start_us + i * (HOUR // n)
        out.append(
            make_record(
                decision_point="credit-risk", model_name="credit-risk", model_version="1",
                model_sha256=manifest.artifact_sha256, features=snapshot, arm=arm,
                decided_at_us=at, received_at_us=at - 1_000,
                score=0.1 + 0.6 * (arm == "canary") * (i % 2), decision="approve",
            )
        )  # fmt: skip
    return out


async def test_drift_is_counted_at_ingest_and_summed_per_window(
    db_url: str, model_dir: Path
) -> None:
    manifest, manifest_json = _credit_risk(model_dir)
    store = create_store(db_url)
    await store.open()
    try:
        registered = RegisteredManifest(
            manifest.artifact_sha256, "credit-risk", "1", manifest_json, int(time.time() * 1e6)
        )
        await store.put_manifest(registered)
        start = BASE_US - BASE_US % HOUR
        first = _records(manifest, 1_000, start, "primary", seed=1)
        second = _records(manifest, 1_000, start + HOUR, "primary", seed=2)
        canary = _records(manifest, 500, start + HOUR, "canary", seed=3)
        await store.insert_many(first)
        await store.insert_many(second + canary)
        # Offered again (a sender's retry): stored once, counted once.
        await store.insert_many(first[:100])
        # A fallback's decision is not counted.
        await store.insert_many(
            [
                dataclasses.replace(
                    first[0],
                    decision_id=first[0].decision_id[:-4] + "ffff",
                    fallback_reason="timeout",
                )
            ]
        )

        queries = DriftQueries(store)
        hourly = await queries.drift("credit-risk", start, start + 2 * HOUR, HOUR)
        assert [(w.start_us, w.end_us) for w in hourly] == [
            (start, start + HOUR),
            (start + HOUR, start + 2 * HOUR),
        ]
        (only,) = hourly[0].arms
        assert only.report is not None and only.report.decisions == 1_000
        assert only.report.decision_mix == {"approve": 1.0}
        arms = {a.arm: a for a in hourly[1].arms}
        assert set(arms) == {"primary", "canary"}
        shifted = {m.measure: m for m in arms["canary"].report.features}  # type: ignore[union-attr]
        steady = {m.measure: m for m in arms["primary"].report.features}  # type: ignore[union-attr]
        assert shifted["debt_to_income"].psi > 0.25 and steady["debt_to_income"].psi < 0.1
        assert arms["canary"].score_psi_vs_primary > 0.25
        assert math.isnan(arms["primary"].score_psi_vs_primary)

        # One window over both hours is their sum; a window rounds out to whole hours.
        (whole,) = await queries.drift("credit-risk", start + 5, start + HOUR + 7)
        (primary,) = [a for a in whole.arms if a.arm == "primary"]
        assert primary.report is not None and primary.report.decisions == 2_000
        assert (whole.start_us, whole.end_us) == (start, start + 2 * HOUR)
        assert await queries.drift("card-fraud", start, start + HOUR) == [
            type(whole)(start, start + HOUR, ())
        ]
    finally:
        await store.close()
