"""Measures the outbox on this machine: appends/s and added latency (group fsync), and delivery
rate to a real lineage store.

    python tests/outbox/outbox_bench.py [--records N]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from outbox_support import make_record

from gateway.outbox import Outbox, OutboxConfig
from gateway.server import open_outbox
from loadtests.local.topology import start_lineage


async def appends(directory: Path, records: int, concurrency: int) -> str:
    outbox = await Outbox.open(OutboxConfig(directory))
    batch = [make_record() for _ in range(records)]
    latencies: list[float] = []
    slots = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with slots:
            started = time.perf_counter()
            await outbox.append(batch[i])
            latencies.append(time.perf_counter() - started)

    fsyncs = outbox.fsyncs
    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(records)))
    elapsed = time.perf_counter() - started
    fsyncs = outbox.fsyncs - fsyncs
    await outbox.close()
    q = statistics.quantiles(latencies, n=100)
    return (
        f"concurrency {concurrency:4d}: {records / elapsed:8.0f} appends/s, "
        f"p50 {q[49] * 1e3:.3f} ms, p99 {q[98] * 1e3:.3f} ms, {records / fsyncs:.1f} appends/fsync"
    )


async def delivery(workdir: Path, records: int) -> str:
    directory = workdir / "outbox"
    outbox = await Outbox.open(OutboxConfig(directory))
    await asyncio.gather(*(outbox.append(make_record()) for _ in range(records)))
    await outbox.close()
    lineage = start_lineage(workdir / "lineage.db", workdir)
    try:
        started = time.perf_counter()
        outbox = await open_outbox(OutboxConfig(directory, endpoint=lineage.address))
        assert await outbox.drained(300)
        elapsed = time.perf_counter() - started
        await outbox.close()
    finally:
        lineage.stop()
    return f"delivery: {records} records in {elapsed:.2f} s = {records / elapsed:.0f} records/s"


async def main(records: int) -> None:
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:
        for concurrency in (1, 8, 64, 256):
            n = records // 10 if concurrency == 1 else records
            print(await appends(Path(tmp) / f"c{concurrency}", n, concurrency), flush=True)
        print(await delivery(Path(tmp) / "delivery", records), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=20000)
    asyncio.run(main(parser.parse_args().records))
