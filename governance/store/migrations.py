"""Versioned schema migrations, applied in order at start and recorded in ``schema_migrations``.

A migration is never edited once released: the runner stores each one's checksum and refuses a
database whose applied migrations differ from these. Add a new version instead. The PostgreSQL
backend will carry the same versions with its own dialect's statements.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]

    @property
    def checksum(self) -> str:
        return hashlib.sha256("\n;\n".join(self.statements).encode()).hexdigest()


SCHEMA_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    checksum TEXT NOT NULL,
    applied_at_us INTEGER NOT NULL
)
"""

SQLITE_MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "decisions",
        (
            # record_json is the canonical JSON (sorted keys) of the whole record; record_sha256
            # is over those exact bytes, so a stored record can be re-verified without decoding.
            """
            CREATE TABLE decisions (
                decision_id TEXT PRIMARY KEY,
                request_id TEXT NOT NULL,
                decision_point TEXT NOT NULL,
                entity_key TEXT NOT NULL,
                received_at_us INTEGER NOT NULL,
                decided_at_us INTEGER NOT NULL,
                model_name TEXT NOT NULL,
                model_version TEXT NOT NULL,
                model_sha256 TEXT NOT NULL,
                arm TEXT NOT NULL,
                config_version TEXT NOT NULL,
                fallback_reason TEXT NOT NULL,
                score REAL NOT NULL,
                decision TEXT NOT NULL,
                policy_version TEXT NOT NULL,
                trace_id TEXT NOT NULL,
                features_sha256 TEXT NOT NULL,
                stored_at_us INTEGER NOT NULL,
                record_sha256 TEXT NOT NULL,
                record_json TEXT NOT NULL
            )
            """,
            "CREATE INDEX decisions_entity_time ON decisions (entity_key, decided_at_us)",
            """
            CREATE INDEX decisions_model_time
                ON decisions (model_name, model_version, decided_at_us)
            """,
            "CREATE INDEX decisions_point_time ON decisions (decision_point, decided_at_us)",
        ),
    ),
)
