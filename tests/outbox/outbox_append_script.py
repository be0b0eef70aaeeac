"""A gateway stand-in for the crash test: opens the outbox, appends records, prints each
decision id as soon as its append returned (the point where the gateway would answer the caller).

    python outbox_append_script.py --dir DIR --endpoint HOST:PORT --count N [--concurrency C]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

# Run as a script: it finds the shared test helpers (tests/support) itself.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from support.records import make_record

from gateway.outbox import OutboxConfig
from gateway.server import open_outbox


async def run(directory: Path, endpoint: str, count: int, concurrency: int) -> None:
    outbox = await open_outbox(OutboxConfig(directory, endpoint=endpoint))
    slots = asyncio.Semaphore(concurrency)

    async def one() -> None:
        record = make_record()
        async with slots:
            await outbox.append(record)
        sys.stdout.write(record.decision_id + "\n")
        sys.stdout.flush()

    await asyncio.gather(*(one() for _ in range(count)))
    await outbox.close(grace_s=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    asyncio.run(run(args.dir, args.endpoint, args.count, args.concurrency))
    return 0


if __name__ == "__main__":
    sys.exit(main())
