"""PostgreSQL backend, for scale: the same schema, migrations and SQL as SQLite.

Connections run in autocommit and begin transactions explicitly, like the SQLite backend, so the
shared store code is the same for both. Appends lock the ``chain_head`` row (``FOR UPDATE``),
which orders writers of several lineage replicas on one database; migrations run under an
advisory lock so replicas starting together apply each version once. ``synchronous_commit`` is
left at its default (on): COMMIT returns after the WAL is flushed.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg

from governance.store.dialect import Dialect
from governance.store.migrations import POSTGRES_MIGRATIONS, Migration
from governance.store.sql import SqlLineageStore

POSTGRES = Dialect(
    name="postgresql",
    placeholder="%s",
    begin_write="BEGIN",
    begin_snapshot="BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
    lock_suffix=" FOR UPDATE",
    errors=(psycopg.Error,),
    conflict_errors=(psycopg.errors.UniqueViolation,),
    # SQLSTATE class 22 (data exception: NUL or an untranslatable character in text, a number out
    # of range, ...) and psycopg's own refusal to send NUL in text; a str that is not UTF-8 (lone
    # surrogates) fails to encode before it is sent.
    data_errors=(psycopg.DataError, UnicodeEncodeError),
    # Session-level, held while migrations run; the key is arbitrary but fixed.
    migration_lock="SELECT pg_advisory_lock(712400417)",
    migration_unlock="SELECT pg_advisory_unlock(712400417)",
)


def _conninfo(url: str) -> str:
    """libpq accepts postgresql:// URLs; SQLAlchemy-style postgresql+psycopg:// is accepted too."""
    scheme, sep, rest = url.partition("://")
    return f"postgresql://{rest}" if sep and scheme.startswith("postgres") else url


def redact(url: str) -> str:
    """The URL without a password, for logs."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if at and ":" in userinfo:
        userinfo = userinfo.split(":", 1)[0] + ":***"
    return f"{scheme}{sep}{userinfo}{at}{host}"


class PostgresLineageStore(SqlLineageStore):
    def __init__(self, url: str, migrations: Sequence[Migration] = POSTGRES_MIGRATIONS) -> None:
        super().__init__(POSTGRES, migrations)
        self.url = url

    def describe(self) -> str:
        return redact(self.url)

    def _connect(self, *, read_only: bool) -> psycopg.Connection[tuple[object, ...]]:
        conn = psycopg.connect(
            _conninfo(self.url),
            autocommit=True,
            connect_timeout=10,
            application_name="scoregate-lineage",
        )
        if read_only:
            conn.execute("SET default_transaction_read_only = on")
        return conn
