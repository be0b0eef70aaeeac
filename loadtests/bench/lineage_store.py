"""Lineage store benchmark: fill a store with N decisions, then time the questions over gRPC.

    python -m loadtests.bench.lineage_store --rows 1000000 [--backends sqlite,postgresql]

Rows go in through the store's own ``insert_many`` (idempotence check, hash chain, durable
commit per batch of 5,000, as an OTLP Export of that size would), spread over 30 days, two
decision points, two model versions on primary/canary arms, with a route change a day. Then a
real ``scoregate-lineage`` process serves the database and a client on the same machine asks
GetDecision for random ids, GetServingAt for random moments and GetDrift for a day (one
window) and for the month (daily windows), and the risk page's pages (``risk_page``), one call
at a time, and prints p50/p99. The demo
models' manifests are registered first, so every decision is also counted for monitoring as
it is stored (the insert rate includes that). Not a test: it takes minutes and its figures
depend on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import grpc

from governance.convert import timestamp_from_us
from governance.store import create_store
from governance.store.entries import ArmTarget, RegisteredManifest, RouteChange
from lineage.v1 import lineage_pb2, lineage_pb2_grpc
from lineage.v1.record import DecisionRecord, ReasonEntry, features_sha256
from loadtests.bench.risk_page import time_pages

DAY_US = 86_400_000_000
START_US = 1_760_000_000_000_000
DAYS = 30
BATCH = 5_000


def _uuid7(ms: int, rng: random.Random) -> str:
    value = (ms << 80) | (0x7 << 76) | (rng.getrandbits(12) << 64) | (0b10 << 62)
    return str(uuid.UUID(int=value | rng.getrandbits(62)))


def make_records(n: int, seed: int = 1) -> list[DecisionRecord]:
    rng = random.Random(seed)
    step = DAYS * DAY_US // n
    records = []
    for i in range(n):
        decided = START_US + i * step + rng.randrange(step)
        point = "card-fraud" if i % 4 else "credit-risk"
        canary = point == "card-fraud" and rng.random() < 0.1
        features: dict[str, float | str | bool] = {
            "amount": round(rng.uniform(1, 5000), 2),
            "merchant_category": rng.choice(("grocery", "fuel", "travel", "online_services")),
            "channel": rng.choice(("pos", "ecommerce")),
            "hour_of_day": float(rng.randrange(24)),
            "card_present": rng.random() < 0.5,
        }
        score = rng.random()
        records.append(
            DecisionRecord(
                decision_id=_uuid7(decided // 1000, rng),
                request_id=f"req-{i}",
                decision_point=point,
                entity_key=f"acct-{rng.randrange(200_000):06d}",
                received_at_us=decided - 1_800,
                decided_at_us=decided,
                model_name=point,
                model_version="2" if canary else "1",
                model_sha256="9f" * 32,
                runtime_instance="bench:1",
                arm="canary" if canary else "primary",
                config_version=f"cfg-{(decided - START_US) // DAY_US}",
                fallback_reason="",
                attempts=1,
                features=features,
                features_sha256=features_sha256(features),
                feature_schema_version="fs-1",
                score=score,
                decision="decline" if score > 0.85 else "review" if score > 0.5 else "approve",
                policy_version=f"{point}-policy-1",
                trace_id=f"{rng.getrandbits(128):032x}",
                span_id=f"{rng.getrandbits(64):016x}",
                gateway_instance="gw-bench",
                reasons=(ReasonEntry(code="R1", description="amount", rank=1),),
                reason_catalogue_version="rc-1",
            )
        )
    return records


def route_changes() -> list[RouteChange]:
    changes = []
    for day in range(DAYS + 1):
        canary = round(0.05 * (day % 5), 2)
        targets = [
            ArmTarget("card-fraud", "primary", "card-fraud", "1", round(1 - canary, 2)),
            ArmTarget("credit-risk", "primary", "credit-risk", "1", 1.0),
        ]
        if canary:
            targets.append(ArmTarget("card-fraud", "canary", "card-fraud", "2", canary))
        changes.append(RouteChange(START_US + day * DAY_US, f"cfg-{day}", {}, tuple(targets)))
    return changes


async def fill(
    db_url: str, records: list[DecisionRecord], manifests: list[RegisteredManifest]
) -> float:
    """Registers ``manifests``, then inserts through the store; returns decisions per second."""
    store = create_store(db_url)
    await store.open()
    try:
        for manifest in manifests:
            await store.put_manifest(manifest)
        for change in route_changes():
            await store.add_route_change(change)
        started = time.perf_counter()
        for i in range(0, len(records), BATCH):
            await store.insert_many(records[i : i + BATCH])
        return len(records) / (time.perf_counter() - started)
    finally:
        await store.close()


def percentiles(samples: list[float]) -> str:
    q = statistics.quantiles(samples, n=100)
    return f"p50 {q[49] * 1000:.2f} ms  p99 {q[98] * 1000:.2f} ms  (n={len(samples)})"


def demo_manifests(model_dir: Path) -> list[RegisteredManifest]:
    """The demo models' manifests as the gateway registers them."""
    from runtimes.manifest import MANIFEST_FILE, find_model_folders, read_manifest

    out = []
    for folder in find_model_folders(model_dir):
        m = read_manifest(folder)
        text = (folder / MANIFEST_FILE).read_text()
        out.append(RegisteredManifest(m.artifact_sha256, m.name, m.version, text, START_US))
    return out


def with_artifacts(
    records: list[DecisionRecord], manifests: list[RegisteredManifest]
) -> list[DecisionRecord]:
    """``records`` naming their version's registered artifact, so monitoring counts them."""
    sha = {(m.name, m.version): m.artifact_sha256 for m in manifests}
    return [
        dataclasses.replace(r, model_sha256=sha.get((r.model_name, r.model_version), "9f" * 32))
        for r in records
    ]


def time_drift(address: str, calls: int) -> tuple[str, str]:
    """GetDrift over one day (one window) and over the month in daily windows."""
    with grpc.insecure_channel(address) as channel:
        stub = lineage_pb2_grpc.LineageServiceStub(channel)
        rng = random.Random(3)
        day, month = [], []
        for _ in range(calls):
            at = START_US + rng.randrange(DAYS - 1) * DAY_US
            request = lineage_pb2.GetDriftRequest(
                decision_point=rng.choice(("card-fraud", "credit-risk")),
                since=timestamp_from_us(at),
                until=timestamp_from_us(at + DAY_US),
            )
            t = time.perf_counter()
            stub.GetDrift(request, timeout=30)
            day.append(time.perf_counter() - t)
        for _ in range(max(2, calls // 10)):
            request = lineage_pb2.GetDriftRequest(
                decision_point="card-fraud",
                since=timestamp_from_us(START_US),
                until=timestamp_from_us(START_US + DAYS * DAY_US),
                step_hours=24,
            )
            t = time.perf_counter()
            stub.GetDrift(request, timeout=60)
            month.append(time.perf_counter() - t)
    return percentiles(day), percentiles(month)


def time_queries(address: str, records: list[DecisionRecord], calls: int) -> tuple[str, str]:
    rng = random.Random(2)
    with grpc.insecure_channel(address) as channel:
        stub = lineage_pb2_grpc.LineageServiceStub(channel)
        for record in rng.sample(records, 200):  # warm-up: connection, caches, first queries
            stub.GetDecision(lineage_pb2.GetDecisionRequest(decision_id=record.decision_id))
        get, serving = [], []
        for _ in range(calls):
            request = lineage_pb2.GetDecisionRequest(decision_id=rng.choice(records).decision_id)
            t = time.perf_counter()
            stub.GetDecision(request, timeout=10)
            get.append(time.perf_counter() - t)
        for _ in range(calls):
            at = START_US + rng.randrange(DAYS * DAY_US)
            request2 = lineage_pb2.GetServingAtRequest(
                decision_point=rng.choice(("card-fraud", "credit-risk")),
                at=timestamp_from_us(at),
            )
            t = time.perf_counter()
            stub.GetServingAt(request2, timeout=10)
            serving.append(time.perf_counter() - t)
    return percentiles(get), percentiles(serving)


def run_backend(
    backend: str,
    records: list[DecisionRecord],
    workdir: Path,
    calls: int,
    pg: str,
    manifests: list[RegisteredManifest],
) -> None:
    from loadtests.local.topology import entry_point, start_process

    if backend == "sqlite":
        url = f"sqlite:///{workdir / 'bench.db'}"
        drop = None
    else:
        import psycopg

        name = f"scoregate_bench_{os.getpid()}"
        with psycopg.connect(f"{pg}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
            admin.execute(f'CREATE DATABASE "{name}"')
        url, drop = f"{pg}/{name}", name
    try:
        rate = asyncio.run(fill(url, records, manifests))
        if drop is not None:
            # What autovacuum does within a minute of a bulk load; without the statistics the
            # planner sorts a whole index range for a page of the newest rows.
            import psycopg

            with psycopg.connect(url, autocommit=True) as db:
                db.execute("ANALYZE")
        print(
            f"{backend}: inserted {len(records):,} decisions at {rate:,.0f}/s "
            "(monitoring counters included)",
            flush=True,
        )
        argv = [
            *entry_point("scoregate-lineage"), "--db-url", url, "--port", "0",
            "--plaintext", "true", "--open-access", "true", "--web-port", "0",
        ]  # fmt: skip
        proc = start_process(f"lineage-{backend}", argv, workdir)
        try:
            get, serving = time_queries(proc.address, records, calls)
            drift_day, drift_month = time_drift(proc.address, max(20, calls // 20))
            pages = time_pages(str(proc.info["web"]), records, max(50, calls // 10))
        finally:
            proc.stop()
        print(f"{backend}: GetDecision   {get}", flush=True)
        print(f"{backend}: GetServingAt  {serving}", flush=True)
        print(f"{backend}: GetDrift, one day          {drift_day}", flush=True)
        print(f"{backend}: GetDrift, 30 daily windows {drift_month}", flush=True)
        for page, figures in pages.items():
            print(f"{backend}: risk page, {page:<28} {figures}", flush=True)
    finally:
        if drop is not None:
            import psycopg

            with psycopg.connect(f"{pg}/postgres", autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{drop}" WITH (FORCE)')


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.bench.lineage_store", description=__doc__
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--calls", type=int, default=2_000, help="timed calls per query")
    parser.add_argument(
        "--postgres", default="postgresql://postgres@127.0.0.1:5432", help="server URL, no db"
    )
    parser.add_argument("--workdir", type=Path, help="where the SQLite file goes (default: tmp)")
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=Path(".scoregate/models"),
        help="demo models (built if absent)",
    )
    args = parser.parse_args(argv)
    from loadtests.local.demo import ensure_models

    ensure_models(args.model_dir.resolve())
    manifests = demo_manifests(args.model_dir.resolve())
    started = time.perf_counter()
    records = with_artifacts(make_records(args.rows), manifests)
    print(f"generated {len(records):,} records in {time.perf_counter() - started:.1f} s")
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        for backend in args.backends.split(","):
            run_backend(backend.strip(), records, Path(tmp), args.calls, args.postgres, manifests)
    return 0


if __name__ == "__main__":
    sys.exit(main())
