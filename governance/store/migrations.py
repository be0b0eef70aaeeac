"""Versioned schema migrations, applied in order at start and recorded in ``schema_migrations``.

A migration is never edited once released: the runner stores each one's checksum and refuses a
database whose applied migrations differ from these. Add a new version instead. Both backends
carry the same versions with the same names; version 1 is written per dialect, versions 2 and 3 use
types both understand (BIGINT, DOUBLE PRECISION, TEXT) and are shared, version 4 changes SQLite
only, versions 5 and 6 are written per dialect (each reads JSON its own way), versions 7 to 10
are shared.
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
    applied_at_us BIGINT NOT NULL
)
"""

_DECISIONS_V1 = """
            CREATE TABLE decisions (
                decision_id TEXT PRIMARY KEY,
                request_id TEXT NOT NULL,
                decision_point TEXT NOT NULL,
                entity_key TEXT NOT NULL,
                received_at_us BIGINT NOT NULL,
                decided_at_us BIGINT NOT NULL,
                model_name TEXT NOT NULL,
                model_version TEXT NOT NULL,
                model_sha256 TEXT NOT NULL,
                arm TEXT NOT NULL,
                config_version TEXT NOT NULL,
                fallback_reason TEXT NOT NULL,
                score DOUBLE PRECISION NOT NULL,
                decision TEXT NOT NULL,
                policy_version TEXT NOT NULL,
                trace_id TEXT NOT NULL,
                features_sha256 TEXT NOT NULL,
                stored_at_us BIGINT NOT NULL,
                record_sha256 TEXT NOT NULL,
                record_json TEXT NOT NULL
            )
            """

_SQLITE_V1: tuple[Migration, ...] = (
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


# Chained tables share one shape: their key, the columns queries use, then seq (the position in the
# chain), entry_sha256 (of body), chain_sha256 and body (the canonical JSON the rest derives from).
_SHARED: tuple[Migration, ...] = (
    Migration(
        2,
        "hash_chain",
        (
            # Rows stored before this version get their seq and chain hash when the store opens.
            "ALTER TABLE decisions ADD COLUMN seq BIGINT",
            "ALTER TABLE decisions ADD COLUMN chain_sha256 TEXT",
            "CREATE UNIQUE INDEX decisions_seq ON decisions (seq)",
            # One row: the last seq and chain hash; writers lock it, which orders all appends.
            """
            CREATE TABLE chain_head (
                id INTEGER PRIMARY KEY CHECK (id = 1),
                seq BIGINT NOT NULL,
                chain_sha256 TEXT NOT NULL
            )
            """,
            "INSERT INTO chain_head (id, seq, chain_sha256) VALUES (1, 0, '" + "0" * 64 + "')",
        ),
    ),
    Migration(
        3,
        "overrides_outcomes_routes_models_purges",
        (
            """
            CREATE TABLE overrides (
                override_id TEXT PRIMARY KEY,
                decision_id TEXT NOT NULL,
                reviewer TEXT NOT NULL,
                at_us BIGINT NOT NULL,
                new_decision TEXT NOT NULL,
                reason TEXT NOT NULL,
                recorded_at_us BIGINT NOT NULL,
                seq BIGINT NOT NULL UNIQUE,
                entry_sha256 TEXT NOT NULL,
                chain_sha256 TEXT NOT NULL,
                body TEXT NOT NULL
            )
            """,
            "CREATE INDEX overrides_decision ON overrides (decision_id, at_us)",
            """
            CREATE TABLE outcomes (
                outcome_id TEXT PRIMARY KEY,
                decision_id TEXT NOT NULL,
                label TEXT NOT NULL,
                at_us BIGINT NOT NULL,
                source TEXT NOT NULL,
                recorded_at_us BIGINT NOT NULL,
                seq BIGINT NOT NULL UNIQUE,
                entry_sha256 TEXT NOT NULL,
                chain_sha256 TEXT NOT NULL,
                body TEXT NOT NULL
            )
            """,
            "CREATE INDEX outcomes_decision ON outcomes (decision_id, at_us)",
            # change_id is the entry sha256: a resent change is recognised by its content.
            """
            CREATE TABLE route_changes (
                change_id TEXT PRIMARY KEY,
                changed_at_us BIGINT NOT NULL,
                config_version TEXT NOT NULL,
                recorded_at_us BIGINT NOT NULL,
                seq BIGINT NOT NULL UNIQUE,
                entry_sha256 TEXT NOT NULL,
                chain_sha256 TEXT NOT NULL,
                body TEXT NOT NULL
            )
            """,
            "CREATE INDEX route_changes_time ON route_changes (changed_at_us, seq)",
            """
            CREATE TABLE purges (
                purge_id TEXT PRIMARY KEY,
                run_at_us BIGINT NOT NULL,
                cutoff_us BIGINT NOT NULL,
                boundary_seq BIGINT NOT NULL,
                boundary_chain_sha256 TEXT NOT NULL,
                recorded_at_us BIGINT NOT NULL,
                seq BIGINT NOT NULL UNIQUE,
                entry_sha256 TEXT NOT NULL,
                chain_sha256 TEXT NOT NULL,
                body TEXT NOT NULL
            )
            """,
            # Manifests are content-addressed by their artifact and not chained.
            """
            CREATE TABLE manifests (
                artifact_sha256 TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                version TEXT NOT NULL,
                manifest_json TEXT NOT NULL,
                registered_at_us BIGINT NOT NULL
            )
            """,
            "CREATE INDEX manifests_name ON manifests (name, version)",
        ),
    ),
)

# Version 4, SQLite: the entity index leaves the decisions table. Entity keys are random, so
# each commit rewrote a leaf of that index per record it held (16 KiB pages): 6 -> 23 KB written
# per record between 20,000 and 100,000 rows, its insert CPU 12 -> 22 us (docs/performance.md).
# New decisions' entity entries are appended to decision_entities_recent (no index: sequential
# pages) and merged into decision_entities, sorted, in bulk (``ENTITY_MERGE_ROWS`` at a time),
# so each leaf is rewritten once per merge; entity queries read both.
DEFERRED_ENTITY_INDEX_VERSION = 4
_SQLITE_ENTITY_INDEX = Migration(
    DEFERRED_ENTITY_INDEX_VERSION,
    "deferred_entity_index",
    (
        """
        CREATE TABLE decision_entities (
            entity_key TEXT NOT NULL,
            decided_at_us INTEGER NOT NULL,
            decision_id TEXT NOT NULL,
            PRIMARY KEY (entity_key, decided_at_us, decision_id)
        ) WITHOUT ROWID
        """,
        """
        CREATE TABLE decision_entities_recent (
            entity_key TEXT NOT NULL,
            decided_at_us INTEGER NOT NULL,
            decision_id TEXT NOT NULL
        )
        """,
        """
        INSERT INTO decision_entities (entity_key, decided_at_us, decision_id)
            SELECT entity_key, decided_at_us, decision_id FROM decisions
            ORDER BY entity_key, decided_at_us, decision_id
        """,
        "DROP INDEX decisions_entity_time",
    ),
)
# PostgreSQL keeps decisions_entity_time: it writes a page's full image once per checkpoint, not
# once per commit, so random keys cost it far less. The version exists so both stay in step.
_POSTGRES_ENTITY_INDEX = Migration(DEFERRED_ENTITY_INDEX_VERSION, "deferred_entity_index", ())

# Version 5: a shadow decision's parent (``extra.parent_decision_id`` of its stored JSON) is
# indexed, so that the shadows of a decision are found without a scan (``ListShadows``). A partial
# index on an expression rather than a column: only shadow rows enter it (the predicate is tested
# first, so other inserts skip the JSON), records stored earlier are indexed when it is built, and
# the decisions row that ``verify`` re-derives is unchanged. A query uses it when its WHERE has the
# same expression and ``arm = 'shadow'`` as a literal: ``SHADOW_PARENT`` is that expression.
SHADOW_PARENT_VERSION = 5
SHADOW_PARENT: dict[str, str] = {
    "sqlite": "json_extract(record_json, '$.extra.parent_decision_id')",
    "postgresql": "((record_json::json -> 'extra') ->> 'parent_decision_id')",
}
SHADOW_ARM_PREDICATE = "arm = 'shadow'"


def _shadow_parent_index(dialect: str) -> Migration:
    return Migration(
        SHADOW_PARENT_VERSION,
        "shadow_parent_index",
        (
            f"CREATE INDEX decisions_shadow_parent ON decisions ({SHADOW_PARENT[dialect]}) "
            f"WHERE {SHADOW_ARM_PREDICATE}",
        ),
    )


# Version 6: decisions by reason code (issue 22). The principal reason's code (the first reason
# of rank 1; '' when none) is a decisions column, so ``verify`` re-derives it from the record like
# every other column, under a partial index: most decisions (approvals) have no reason and skip
# it. ``PRINCIPAL_REASON_PREDICATE`` is its predicate, which a query repeats as a literal for
# SQLite's planner to use it. Every reason's code is in decision_reasons, one entry per code
# and decision, ordered by time within a code. Records stored earlier are filled in when the
# version applies, which reads every decision once.
REASON_INDEX_VERSION = 6
PRINCIPAL_REASON_PREDICATE = "principal_reason <> ''"
_PRINCIPAL_INDEX = (
    "CREATE INDEX decisions_principal_reason ON decisions (principal_reason, decided_at_us) "
    f"WHERE {PRINCIPAL_REASON_PREDICATE}"
)
_ADD_PRINCIPAL = "ALTER TABLE decisions ADD COLUMN principal_reason TEXT NOT NULL DEFAULT ''"
_SQLITE_REASON_INDEX = Migration(
    REASON_INDEX_VERSION,
    "reason_index",
    (
        _ADD_PRINCIPAL,
        """
        UPDATE decisions SET principal_reason = COALESCE((
            SELECT json_extract(r.value, '$.code')
            FROM json_each(decisions.record_json, '$.reasons') AS r
            WHERE json_extract(r.value, '$.rank') = 1 ORDER BY r.key LIMIT 1), '')
        WHERE json_array_length(record_json, '$.reasons') > 0
        """,
        _PRINCIPAL_INDEX,
        """
        CREATE TABLE decision_reasons (
            code TEXT NOT NULL,
            decided_at_us INTEGER NOT NULL,
            decision_id TEXT NOT NULL,
            PRIMARY KEY (code, decided_at_us, decision_id)
        ) WITHOUT ROWID
        """,
        """
        INSERT OR IGNORE INTO decision_reasons (code, decided_at_us, decision_id)
            SELECT json_extract(r.value, '$.code'), d.decided_at_us, d.decision_id
            FROM decisions AS d, json_each(d.record_json, '$.reasons') AS r
        """,
    ),
)
_POSTGRES_REASON_INDEX = Migration(
    REASON_INDEX_VERSION,
    "reason_index",
    (
        _ADD_PRINCIPAL,
        """
        UPDATE decisions SET principal_reason = COALESCE((
            SELECT r.value ->> 'code'
            FROM json_array_elements(record_json::json -> 'reasons') WITH ORDINALITY AS r(value, n)
            WHERE (r.value ->> 'rank') = '1' ORDER BY r.n LIMIT 1), '')
        WHERE json_array_length(record_json::json -> 'reasons') > 0
        """,
        _PRINCIPAL_INDEX,
        """
        CREATE TABLE decision_reasons (
            code TEXT NOT NULL,
            decided_at_us BIGINT NOT NULL,
            decision_id TEXT NOT NULL,
            PRIMARY KEY (code, decided_at_us, decision_id)
        )
        """,
        """
        INSERT INTO decision_reasons (code, decided_at_us, decision_id)
            SELECT r.value ->> 'code', d.decided_at_us, d.decision_id
            FROM decisions AS d, json_array_elements(d.record_json::json -> 'reasons') AS r(value)
            ON CONFLICT DO NOTHING
        """,
    ),
)


# Version 7: the access log (issue 23), a chained table like overrides. Queries select by time,
# by principal and time, or by method and time; a query by decision id reads the body's list.
ACCESS_LOG_VERSION = 7
_ACCESS_LOG = Migration(
    ACCESS_LOG_VERSION,
    "access_log",
    (
        """
        CREATE TABLE access_log (
            access_id TEXT PRIMARY KEY,
            at_us BIGINT NOT NULL,
            principal TEXT NOT NULL,
            method TEXT NOT NULL,
            outcome TEXT NOT NULL,
            recorded_at_us BIGINT NOT NULL,
            seq BIGINT NOT NULL UNIQUE,
            entry_sha256 TEXT NOT NULL,
            chain_sha256 TEXT NOT NULL,
            body TEXT NOT NULL
        )
        """,
        "CREATE INDEX access_log_time ON access_log (at_us)",
        "CREATE INDEX access_log_principal ON access_log (principal, at_us)",
        "CREATE INDEX access_log_method ON access_log (method, at_us)",
    ),
)


# Version 8: the monitoring counters (issue 24, governance.monitoring.windows): per decision
# point, hour, model version, arm, measure and slot, how many decisions; a window is a range of
# the key's (decision_point, hour_us) prefix. Counted from this version on: decisions stored
# before it are not counted (docs/monitoring.md).
DRIFT_COUNTS_VERSION = 8
_DRIFT_COUNTS = Migration(
    DRIFT_COUNTS_VERSION,
    "drift_counts",
    (
        """
        CREATE TABLE drift_counts (
            decision_point TEXT NOT NULL,
            hour_us BIGINT NOT NULL,
            model_name TEXT NOT NULL,
            model_version TEXT NOT NULL,
            arm TEXT NOT NULL,
            measure TEXT NOT NULL,
            slot TEXT NOT NULL,
            count BIGINT NOT NULL,
            PRIMARY KEY (decision_point, hour_us, model_name, model_version, arm, measure, slot)
        )
        """,
    ),
)


# Version 9: approvals and revocations of model versions (issue 25), a chained table like
# overrides; a version's status reads its entries by artifact sha256 in chain order.
APPROVALS_VERSION = 9
_APPROVALS = Migration(
    APPROVALS_VERSION,
    "approvals",
    (
        """
        CREATE TABLE approvals (
            approval_id TEXT PRIMARY KEY,
            action TEXT NOT NULL,
            artifact_sha256 TEXT NOT NULL,
            principal TEXT NOT NULL,
            at_us BIGINT NOT NULL,
            recorded_at_us BIGINT NOT NULL,
            seq BIGINT NOT NULL UNIQUE,
            entry_sha256 TEXT NOT NULL,
            chain_sha256 TEXT NOT NULL,
            body TEXT NOT NULL
        )
        """,
        "CREATE INDEX approvals_artifact ON approvals (artifact_sha256, seq)",
    ),
)


# Version 10: how far `scoregate lineage backfill-drift` has counted the decisions stored before
# version 8 into the monitoring counters (one row: the last seq counted), so that a run stopped
# halfway resumes and a finished one adds nothing.
DRIFT_BACKFILL_VERSION = 10
_DRIFT_BACKFILL = Migration(
    DRIFT_BACKFILL_VERSION,
    "drift_backfill",
    (
        """
        CREATE TABLE drift_backfill (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            through_seq BIGINT NOT NULL,
            counted BIGINT NOT NULL,
            finished_at_us BIGINT NOT NULL
        )
        """,
    ),
)


SQLITE_MIGRATIONS: tuple[Migration, ...] = (
    *_SQLITE_V1,
    *_SHARED,
    _SQLITE_ENTITY_INDEX,
    _shadow_parent_index("sqlite"),
    _SQLITE_REASON_INDEX,
    _ACCESS_LOG,
    _DRIFT_COUNTS,
    _APPROVALS,
    _DRIFT_BACKFILL,
)

POSTGRES_MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "decisions",
        (
            _DECISIONS_V1,
            "CREATE INDEX decisions_entity_time ON decisions (entity_key, decided_at_us)",
            """
            CREATE INDEX decisions_model_time
                ON decisions (model_name, model_version, decided_at_us)
            """,
            "CREATE INDEX decisions_point_time ON decisions (decision_point, decided_at_us)",
        ),
    ),
    *_SHARED,
    _POSTGRES_ENTITY_INDEX,
    _shadow_parent_index("postgresql"),
    _POSTGRES_REASON_INDEX,
    _ACCESS_LOG,
    _DRIFT_COUNTS,
    _APPROVALS,
    _DRIFT_BACKFILL,
)
