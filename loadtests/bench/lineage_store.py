"""Lineage store benchmark: fill a store with N decisions, then time the questions over gRPC.

    python -m loadtests.bench.lineage_store --rows 1000000 [--backends sqlite,postgresql]

Rows go in through the store's own ``insert_many`` (idempotence check, hash chain, durable
commit per batch of 5,000, as an OTLP Export of that size would), spread over 30 days, two
decision points, two model versions on primary/canary arms, with a route change a day. Then a
real ``scoregate-lineage`` process serves the database and a client on the same machine asks
GetDecision for random ids and GetServingAt for random moments, one call at a time, and prints
p50/p99. Not a test: it takes minutes and its figures depend on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
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
from governance.store.entries import ArmTarget, RouteChange
from lineage.v1 import lineage_pb2, lineage_pb2_grpc
from lineage.v1.record import DecisionRecord, ReasonEntry, features_sha256

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


async def fill(db_url: str, records: list[DecisionRecord]) -> float:
    """Inserts through the store; returns decisions per second."""
    store = create_store(db_url)
    await store.open()
    try:
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
    backend: str, records: list[DecisionRecord], workdir: Path, calls: int, pg: str
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
        rate = asyncio.run(fill(url, records))
        print(f"{backend}: inserted {len(records):,} decisions at {rate:,.0f}/s", flush=True)
        argv = [*entry_point("scoregate-lineage"), "--db-url", url, "--port", "0"]
        proc = start_process(f"lineage-{backend}", argv, workdir)
        try:
            get, serving = time_queries(proc.address, records, calls)
        finally:
            proc.stop()
        print(f"{backend}: GetDecision   {get}", flush=True)
        print(f"{backend}: GetServingAt  {serving}", flush=True)
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
    args = parser.parse_args(argv)
    started = time.perf_counter()
    records = make_records(args.rows)
    print(f"generated {len(records):,} records in {time.perf_counter() - started:.1f} s")
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        for backend in args.backends.split(","):
            run_backend(backend.strip(), records, Path(tmp), args.calls, args.postgres)
    return 0


if __name__ == "__main__":
    sys.exit(main())
