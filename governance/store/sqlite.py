"""SQLite backend: a single file in WAL mode, the default.

Durability: WAL with ``synchronous=FULL``, so a committed batch survives a process crash and a
power loss; ``insert_many`` returns only after COMMIT, and the OTLP receiver answers the sender only
after that. The reader connection is read-only; ``BEGIN IMMEDIATE`` takes the write lock at once,
so a second process writing the same file waits (up to the busy timeout) instead of failing late.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

from governance.store.clock import now_us
from governance.store.dialect import Dialect
from governance.store.migrations import SQLITE_MIGRATIONS, Migration
from governance.store.sql import SqlLineageStore

__all__ = ["SQLITE", "SqliteLineageStore", "now_us"]

# 16 KiB pages instead of SQLite's 4 KiB: a decision row is large and five B-trees take every
# batch's inserts, so with 4 KiB pages each commit dirties (and the WAL rewrites) many more,
# shallower-fanout pages. Inserts cost less CPU and point lookups are no slower
# (docs/performance.md).
PAGE_SIZE = 16384

SQLITE = Dialect(
    name="sqlite",
    placeholder="?",
    begin_write="BEGIN IMMEDIATE",
    # A deferred transaction reads one WAL snapshot from its first SELECT to its end.
    begin_snapshot="BEGIN",
    lock_suffix="",
    errors=(sqlite3.Error,),
    conflict_errors=(sqlite3.IntegrityError,),
    # SQLite stores NUL in text; what it cannot hold is an integer beyond 64 bits (refused while
    # binding, as OverflowError), a str that is not UTF-8 (lone surrogates) and an oversized value.
    data_errors=(sqlite3.DataError, OverflowError, UnicodeEncodeError),
    deferred_entity_index=True,
)


class SqliteLineageStore(SqlLineageStore):
    """The default backend: a single SQLite file in WAL mode."""

    def __init__(self, path: Path, migrations: Sequence[Migration] = SQLITE_MIGRATIONS) -> None:
        super().__init__(SQLITE, migrations)
        self.path = path

    def describe(self) -> str:
        return str(self.path)

    def _connect(self, *, read_only: bool) -> sqlite3.Connection:
        if read_only:
            conn = sqlite3.connect(
                f"file:{self.path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA query_only = ON")
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: transactions are begun and committed explicitly.
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            # Takes effect only on a new, empty file (before WAL mode is set); an existing file
            # keeps its page size (docs/lineage.md: how to convert one).
            conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA busy_timeout = 5000")
        return conn
