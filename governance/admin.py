"""``scoregate lineage verify`` and ``purge``: they work on the database itself, not through the
server, so an auditor checks what is actually stored and retention runs where the data is.

verify exits 0 when the store matches its chain and checkpoints, 1 naming the first bad entry,
2 when the database cannot be read; purge exits 0 after recording its run.
"""

from __future__ import annotations

import argparse
import asyncio
import calendar
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from governance.chain import Checkpoint, read_checkpoints
from governance.client import EXIT_NO, EXIT_UNREACHABLE
from governance.errors import LineageError
from governance.output import pairs, parse_when, when
from governance.store import create_store
from governance.store.base import VerifyReport
from governance.store.entries import PurgeReport

DB_URL_ENV = "SCOREGATE_LINEAGE_DB_URL"
CHECKPOINT_ENV = "SCOREGATE_LINEAGE_CHECKPOINT_FILE"
RETENTION_ENV = "SCOREGATE_LINEAGE_RETENTION_MONTHS"


def months_before(moment: datetime, months: int) -> datetime:
    """The same day and time ``months`` calendar months earlier (or that month's last day)."""
    index = moment.year * 12 + (moment.month - 1) - months
    year, month = divmod(index, 12)
    day = min(moment.day, calendar.monthrange(year, month + 1)[1])
    return moment.replace(year=year, month=month + 1, day=day)


def _us(moment: datetime) -> int:
    return int(moment.timestamp()) * 1_000_000 + moment.microsecond


def _ts_text(us: int) -> str:
    from governance.convert import timestamp_from_us

    return when(timestamp_from_us(us))


def _db_parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument(
        "--db-url",
        default=os.environ.get(DB_URL_ENV),
        required=DB_URL_ENV not in os.environ,
        help=f"the lineage database (default: ${DB_URL_ENV})",
    )
    return parser


async def _verify(db_url: str, checkpoints: list[Checkpoint]) -> VerifyReport:
    store = create_store(db_url)
    await store.open()
    try:
        return await store.verify(checkpoints)
    finally:
        await store.close()


def verify_main(argv: list[str], prog: str = "scoregate lineage verify") -> int:
    parser = _db_parser(prog, "Check the database against its hash chain and checkpoints.")
    parser.add_argument(
        "--checkpoints",
        type=Path,
        default=os.environ.get(CHECKPOINT_ENV),
        help=f"the exported checkpoint file (default: ${CHECKPOINT_ENV})",
    )
    parser.add_argument(
        "--all-checkpoints",
        action="store_true",
        help="check every checkpoint in the file, not only the latest",
    )
    args = parser.parse_args(argv)
    checkpoints: list[Checkpoint] = []
    if args.checkpoints is not None:
        try:
            checkpoints = read_checkpoints(args.checkpoints)
        except OSError as e:
            print(f"{prog}: cannot read checkpoints: {e}", file=sys.stderr)
            return EXIT_UNREACHABLE
        if not args.all_checkpoints:
            checkpoints = checkpoints[-1:]
    try:
        report = asyncio.run(_verify(args.db_url, checkpoints))
    except LineageError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return EXIT_UNREACHABLE
    head = report.head
    rows = [
        ("entries checked", str(report.checked)),
        ("chain head", f"seq {head.size}  {head.head_sha256}" if head else "-"),
        ("purge boundary", f"seq {report.boundary_seq}" if report.boundary_seq else "none"),
        (
            "checkpoints",
            f"{report.checkpoints_checked} checked, {report.checkpoints_skipped} "
            "older than the purge boundary",
        ),
    ]
    if checkpoints:
        latest = checkpoints[-1]
        rows.append(("latest checkpoint", f"size {latest.size} at {_ts_text(latest.at_us)}"))
    else:
        rows.append(("latest checkpoint", "none given: a rewrite of the whole chain would pass"))
    print(pairs(rows))
    if report.ok:
        print("OK: the store matches its hash chain" + (" and checkpoints" if checkpoints else ""))
        return 0
    print(f"TAMPERED: {report.problem}")
    return EXIT_NO


async def _purge(db_url: str, cutoff_us: int) -> PurgeReport:
    store = create_store(db_url)
    await store.open()
    try:
        return await store.purge(cutoff_us)
    finally:
        await store.close()


def purge_main(argv: list[str], prog: str = "scoregate lineage purge") -> int:
    parser = _db_parser(prog, "Delete what is older than the retention period; records the run.")
    parser.add_argument(
        "--retention-months",
        type=int,
        default=int(os.environ.get(RETENTION_ENV, "25")),
        help=f"keep this many months (default: ${RETENTION_ENV} or 25)",
    )
    parser.add_argument(
        "--before",
        help="ISO 8601 cutoff instead of the retention period (for a one-off, documented purge)",
    )
    args = parser.parse_args(argv)
    if args.retention_months < 1:
        print(f"{prog}: --retention-months must be at least 1", file=sys.stderr)
        return EXIT_NO
    if args.before:
        try:
            ts = parse_when(args.before)
        except ValueError as e:
            print(f"{prog}: {e}", file=sys.stderr)
            return EXIT_NO
        cutoff = ts.seconds * 1_000_000 + ts.nanos // 1000
    else:
        cutoff = _us(months_before(datetime.now(UTC), args.retention_months))
    try:
        report = asyncio.run(_purge(args.db_url, cutoff))
    except LineageError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return EXIT_UNREACHABLE
    deleted = ", ".join(f"{n} {table}" for table, n in sorted(report.deleted.items())) or "nothing"
    print(
        pairs(
            [
                ("cutoff", _ts_text(report.cutoff_us)),
                ("deleted", deleted),
                ("boundary", f"seq {report.boundary_seq}  {report.boundary_chain_sha256}"),
                ("recorded as", f"purge {report.purge_id} (seq {report.seq})"),
            ]
        )
    )
    return 0
