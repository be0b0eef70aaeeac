"""Issue 4's acceptance: no acknowledged decision is lost when the gateway and the store are killed.

Real runtime, gateway (with its durable outbox) and lineage store processes; a client keeps 16
decisions in flight until 5,000 have been acknowledged. Meanwhile the gateway is SIGKILLed and
restarted on the same outbox, and later the lineage store is SIGKILLed and restarted on the same
database and port. Afterwards every acknowledged decision id must be in the database exactly once,
and the store's hash chain must verify, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import yaml
from support.postgres import postgres_database
from support.waiting import wait_until_async

from loadtests.local.topology import (
    ManagedProcess,
    demo_routes,
    start_gateway,
    start_lineage,
    start_runtime,
)
from runtimes.manifest import load_manifests
from runtimes.training.datasets import sample_requests
from scoring.v1 import scoring_pb2_grpc
from scoring.v1.requests import score_request

ACKNOWLEDGED = 5_000
IN_FLIGHT = 16


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'lineage.db'}"
        return
    with postgres_database("scoregate_noloss") as url:
        yield url


def stored_ids(db_url: str) -> list[str]:
    query = "SELECT decision_id FROM decisions"
    if db_url.startswith("sqlite:///"):
        with sqlite3.connect(db_url.removeprefix("sqlite:///")) as conn:
            return [row[0] for row in conn.execute(query)]
    import psycopg

    with psycopg.connect(db_url) as conn:
        return [row[0] for row in conn.execute(query)]


class Load:
    """Keeps IN_FLIGHT decisions going to whichever gateway is current; remembers the acked."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.acked: list[str] = []
        self.errors = 0
        self._counter = itertools.count()
        self._rows = sample_requests("card-fraud", 500, seed=21)

    async def worker(self) -> None:
        channel_address, channel = "", None
        while len(self.acked) < ACKNOWLEDGED:
            if channel is None or channel_address != self.address:
                if channel is not None:
                    await channel.close()
                channel_address = self.address
                channel = grpc.aio.insecure_channel(channel_address)
            n = next(self._counter)
            request = score_request(
                f"noloss-{n}", "card-fraud", f"cust-{n % 1000}", self._rows[n % len(self._rows)]
            )
            try:
                response = await scoring_pb2_grpc.ScoringServiceStub(channel).Score(
                    request, timeout=2.0
                )
            except grpc.aio.AioRpcError:
                # Not acknowledged: the caller would retry; the test needs no more than that.
                self.errors += 1
                # Not synchronisation: the caller's pause before its next call, so a worker
                # facing a dead gateway does not spin on refusals while it is restarted.
                await asyncio.sleep(0.02)
                continue
            self.acked.append(response.decision_id)
        if channel is not None:
            await channel.close()


async def _until_acknowledged(load: Load, count: int) -> None:
    await wait_until_async(
        lambda: len(load.acked), 120, f"{count} decisions acknowledged (the load stalled)",
        until=lambda acked: acked >= count,
    )  # fmt: skip


async def test_no_acknowledged_decision_is_lost_when_gateway_and_store_are_killed(
    db_url: str, model_dir: Path, tmp_path: Path
) -> None:
    runtime = start_runtime(model_dir, tmp_path)
    lineage = start_lineage(db_url, tmp_path)
    lineage_address = lineage.address
    routes = tmp_path / "routes.yaml"
    routes.write_text(yaml.safe_dump(demo_routes(load_manifests(model_dir), runtime.address)))

    def gateway() -> ManagedProcess:
        return start_gateway(
            routes,
            model_dir,
            tmp_path,
            lineage_endpoint=lineage_address,
            outbox_dir=tmp_path / "outbox",
        )

    processes = [runtime, lineage, gateway()]
    try:
        load = Load(processes[2].address)
        workers = [asyncio.create_task(load.worker()) for _ in range(IN_FLIGHT)]

        await _until_acknowledged(load, ACKNOWLEDGED * 3 // 10)
        processes[2].kill()  # SIGKILL: whatever it acknowledged is only in its outbox
        processes[2] = await asyncio.to_thread(gateway)
        load.address = processes[2].address

        await _until_acknowledged(load, ACKNOWLEDGED * 6 // 10)
        processes[1].kill()  # SIGKILL the store while the gateway keeps deciding
        # Not synchronisation: the outage itself. The store stays down for a while, so the
        # gateway acknowledges decisions its outbox cannot deliver and the sender backs off.
        await asyncio.sleep(1.5)
        port = lineage_address.rsplit(":", 1)[1]
        processes[1] = await asyncio.to_thread(
            start_lineage, db_url, tmp_path, "lineage", ["--port", port]
        )

        await asyncio.gather(*workers)
        acked = set(load.acked)
        assert len(acked) == len(load.acked) >= ACKNOWLEDGED

        def lost(missing: set[str]) -> str:
            return f"{len(missing)} acknowledged decisions lost, e.g. {sorted(missing)[:3]}"

        # The outbox delivers its backlog to the restarted store; wait until it has.
        missing = await wait_until_async(
            lambda: acked - set(stored_ids(db_url)), 90, "every acknowledged decision stored",
            until=lambda missing: not missing, describe=lost, interval_s=0.1,
        )  # fmt: skip
        assert not missing, lost(missing)
        stored = stored_ids(db_url)
        assert len(stored) == len(set(stored)), "a decision was stored twice"

        verify = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "gateway.cli", "lineage", "verify", "--db-url", db_url],
            capture_output=True,
            text=True,
        )
        assert verify.returncode == 0, verify.stdout + verify.stderr
    finally:
        for proc in reversed(processes):
            proc.stop()
