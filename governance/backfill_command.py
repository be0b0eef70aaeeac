"""``scoregate lineage backfill-drift``: counts the decisions a store kept before it had
monitoring counters (schema version 8) into them, so that drift and shadow pairs cover them.

It works on the database itself, like ``verify`` and ``purge``, beside a running store (each
batch is one short write transaction). Run it again at any time: it resumes where it stopped
and a finished backfill counts nothing twice. Exits 0 when finished, 2 when the database cannot
be read.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from governance.client import EXIT_NO, EXIT_UNREACHABLE
from governance.errors import LineageError
from governance.output import pairs
from governance.store import create_store
from governance.store.drift_backfill import BackfillProgress
from governance.store.sql import SqlLineageStore

DB_URL_ENV = "SCOREGATE_LINEAGE_DB_URL"
DEFAULT_BATCH = 2_000


async def _backfill(db_url: str, batch: int) -> tuple[BackfillProgress, int]:
    store = create_store(db_url)
    await store.open()
    try:
        assert isinstance(store, SqlLineageStore)
        batches = 0
        while True:
            progress = await store.backfill_drift(batch)
            batches += 1
            if progress.finished:
                return progress, batches
    finally:
        await store.close()


def backfill_main(argv: list[str], prog: str = "scoregate lineage backfill-drift") -> int:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Count the decisions stored before the monitoring counters existed "
        "(schema version 8) into them, in batches; safe to run again.",
    )
    parser.add_argument(
        "--db-url",
        default=os.environ.get(DB_URL_ENV),
        required=DB_URL_ENV not in os.environ,
        help=f"the lineage database (default: ${DB_URL_ENV})",
    )
    parser.add_argument(
        "--batch", type=int, default=DEFAULT_BATCH, help="decisions per write transaction"
    )
    args = parser.parse_args(argv)
    if args.batch < 1:
        print(f"{prog}: --batch must be at least 1", file=sys.stderr)
        return EXIT_NO
    try:
        progress, batches = asyncio.run(_backfill(args.db_url, args.batch))
    except LineageError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return EXIT_UNREACHABLE
    print(
        pairs(
            [
                ("decisions counted", f"{progress.counted} (in all runs)"),
                ("through", f"seq {progress.through_seq}"),
                ("batches this run", str(batches)),
            ]
        )
    )
    print("OK: every decision stored before the counters existed is counted")
    return 0
