"""Lineage storage: the ``LineageStore`` interface, its backends, and ``create_store``."""

from __future__ import annotations

from governance.errors import DatabaseUrlError
from governance.store.base import Conflict, InsertResult, LineageStore, StoredDecision
from governance.store.postgres import PostgresLineageStore
from governance.store.sqlite import SqliteLineageStore
from governance.store.url import DatabaseUrl, parse_db_url

__all__ = [
    "Conflict",
    "DatabaseUrl",
    "InsertResult",
    "LineageStore",
    "PostgresLineageStore",
    "SqliteLineageStore",
    "StoredDecision",
    "create_store",
    "parse_db_url",
]


def create_store(db_url: str) -> LineageStore:
    """The backend for a ``--db-url``, not yet opened (call ``await store.open()``)."""
    url = parse_db_url(db_url)
    if url.backend == "sqlite":
        assert url.path is not None
        return SqliteLineageStore(url.path)
    if url.backend == "postgresql":
        return PostgresLineageStore(url.url)
    raise DatabaseUrlError(f"database URL {db_url!r}: unsupported backend")
