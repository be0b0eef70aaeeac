"""The store's threads and connections: a writer and a reader thread, with one connection each.

Every call runs on one of these threads, never on the event loop. Each connection is used only by
its own thread, which serialises access to it without a further lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

from governance.errors import StoreUnavailable, UnstorableData
from governance.store.dialect import Dialect
from governance.store.tables import Conn

log = logging.getLogger(__name__)

T = TypeVar("T")


class Connection:
    """One backend connection, with the dialect its SQL (written with ``?``) is rewritten for."""

    __slots__ = ("dialect", "raw")

    def __init__(self, raw: Conn, dialect: Dialect) -> None:
        self.raw = raw
        self.dialect = dialect

    def execute(self, sql: str, params: Sequence[object] = ()) -> Any:
        """Runs ``sql`` written with ``?`` placeholders; returns the cursor."""
        return self.raw.execute(self.dialect.with_placeholders(sql), tuple(params))

    def execute_many(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        """Runs ``sql`` written with ``?`` placeholders once per row, in one call."""
        self.raw.cursor().executemany(self.dialect.with_placeholders(sql), rows)

    def run(self, statement: str) -> Any:
        """Runs a statement as written and without parameters (no placeholder rewriting: some
        are one backend's own SQL); returns the cursor."""
        return self.raw.execute(statement)

    def write_transaction(self) -> contextlib.AbstractContextManager[None]:
        """A transaction that takes the write lock at once (SQLite) or at the first write."""
        return self._transaction(self.dialect.begin_write)

    def snapshot(self) -> contextlib.AbstractContextManager[None]:
        """A read-only transaction that sees one snapshot from its first read to its end."""
        return self._transaction(self.dialect.begin_snapshot)

    @contextlib.contextmanager
    def _transaction(self, begin: str) -> Iterator[None]:
        self.raw.execute(begin)
        try:
            yield
            self.raw.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(Exception):
                self.raw.execute("ROLLBACK")
            raise


class Connect(Protocol):
    def __call__(self, *, read_only: bool) -> Conn:
        """A new connection in autocommit mode; transactions are begun explicitly."""


class Engine:
    """Runs functions of a connection on the writer or the reader thread, off the event loop.

    The backend's database errors leave as StoreUnavailable, so the OTLP sender retries; its
    data errors (a value the database can never hold) leave as UnstorableData instead, because
    retrying them cannot help (the ingestor isolates the record that caused one).
    """

    def __init__(self, dialect: Dialect) -> None:
        self._dialect = dialect
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="lineage-writer")
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="lineage-reader")
        self._write_conn: Connection | None = None
        self._read_conn: Connection | None = None
        self._closed = False

    async def write(self, fn: Callable[[Connection], T]) -> T:
        return await self._on_thread(self._writer, lambda: fn(_opened(self._write_conn)))

    async def read(self, fn: Callable[[Connection], T]) -> T:
        return await self._on_thread(self._reader, lambda: fn(_opened(self._read_conn)))

    async def _on_thread(self, executor: ThreadPoolExecutor, fn: Callable[[], T]) -> T:
        if self._closed:
            raise StoreUnavailable("lineage store is closed")
        try:
            return await asyncio.get_running_loop().run_in_executor(executor, fn)
        except self._dialect.data_errors as e:
            # Reported by whoever asked (the ingestor logs the records it rejects for this).
            log.debug("lineage database refused a value: %s", e)
            raise UnstorableData(f"the database refused a value: {_first_line(e)}") from e
        except self._dialect.errors as e:
            log.error("lineage database error: %s", e)
            raise StoreUnavailable(f"lineage database error: {e}") from e

    async def open(self, connect: Connect, prepare: Callable[[Connection], None]) -> None:
        """Opens the writer's connection and runs ``prepare`` on it (the schema is ready before
        the reader connects), then the reader's; a failure closes whatever was opened."""

        def open_writer() -> None:
            self._write_conn = db = Connection(connect(read_only=False), self._dialect)
            prepare(db)

        def open_reader() -> None:
            self._read_conn = Connection(connect(read_only=True), self._dialect)

        try:
            await self._on_thread(self._writer, open_writer)
            await self._on_thread(self._reader, open_reader)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        if self._closed:
            return
        await self._on_thread(self._reader, self._close_reader)
        await self._on_thread(self._writer, self._close_writer)
        self._closed = True
        self._reader.shutdown()
        self._writer.shutdown()

    def _close_reader(self) -> None:
        if self._read_conn is not None:
            self._read_conn.raw.close()
            self._read_conn = None

    def _close_writer(self) -> None:
        if self._write_conn is not None:
            self._write_conn.raw.close()
            self._write_conn = None


def _first_line(error: BaseException) -> str:
    """The error's message without the lines PostgreSQL adds (DETAIL, CONTEXT: they may quote
    the data)."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def _opened(db: Connection | None) -> Connection:
    if db is None:
        raise StoreUnavailable("lineage store is not open")
    return db
