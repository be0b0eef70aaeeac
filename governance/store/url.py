"""``--db-url`` parsing: which backend, and where its data lives."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from governance.errors import DatabaseUrlError


@dataclass(frozen=True, slots=True)
class DatabaseUrl:
    """A parsed database URL; ``path`` is set for SQLite, ``url`` keeps the original text."""

    backend: Literal["sqlite", "postgresql"]
    url: str
    path: Path | None = None


def parse_db_url(url: str) -> DatabaseUrl:
    """Parses ``sqlite:///relative.db``, ``sqlite:////absolute.db`` or ``postgresql://...``.

    The SQLite form follows SQLAlchemy's: three slashes, then the path, so an absolute path shows
    a fourth slash.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise DatabaseUrlError(f"database URL {url!r} has no scheme (expected sqlite:///PATH)")
    scheme = scheme.lower()
    if scheme == "sqlite":
        if not rest.startswith("/") or len(rest) < 2:
            raise DatabaseUrlError(f"database URL {url!r}: expected sqlite:///PATH")
        return DatabaseUrl("sqlite", url, Path(rest[1:]))
    if scheme in ("postgresql", "postgres") or scheme.startswith("postgresql+"):
        return DatabaseUrl("postgresql", url)
    raise DatabaseUrlError(f"database URL {url!r}: unsupported backend {scheme!r}")
