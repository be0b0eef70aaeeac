"""The chained tables: their columns, and how a row is derived from what it records.

``verify`` re-derives every column from the stored canonical JSON with these same functions, so
an edit to any column, not only to the JSON, is caught.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import MISSING, asdict, dataclass, fields
from typing import Any

import orjson

from lineage.v1.record import DecisionRecord, ReasonEntry, canonical_record_json

# A DB-API connection of either backend (sqlite3 or psycopg), used through execute/cursor only.
Conn = Any

DECISION_COLUMNS = (
    "decision_id",
    "request_id",
    "decision_point",
    "entity_key",
    "received_at_us",
    "decided_at_us",
    "model_name",
    "model_version",
    "model_sha256",
    "arm",
    "config_version",
    "fallback_reason",
    "score",
    "decision",
    "policy_version",
    "trace_id",
    "features_sha256",
    "stored_at_us",
    "record_sha256",
    "record_json",
    "principal_reason",
)
"""The decisions columns derived from a record; ``principal_reason`` came with schema version 6
(a store opened with fewer migrations writes the others only: ``LEGACY_DECISION_COLUMNS``)."""
LEGACY_DECISION_COLUMNS = DECISION_COLUMNS[:-1]


def principal_reason(record: DecisionRecord) -> str:
    """The code of the record's principal reason: its first of rank 1; '' when it has none
    (migration 6 fills the column of earlier records by the same rule, in SQL)."""
    return next((r.code for r in record.reasons if r.rank == 1), "")


# The fields each change to the record added after stores held records, oldest change first:
# (top-level fields, fields of each reason). A record stored before a change keeps the canonical
# JSON of its time, without that change's fields (nor any later one's), and reads them as their
# defaults. Its sha256 is over those bytes, so the store never rewrites them in today's form;
# ``verify`` and the duplicate check accept each earlier form. A change that adds a field to
# the record adds its line here.
RECORD_FIELD_CHANGES: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    # Issue 22: a model decision's contributions, and each reason's feature and contribution.
    (("contributions", "contributions_base"), ("contribution", "feature")),
    # Issue 23: who asked for the decision, how the gateway verified it, under which policy.
    (("access_policy_version", "principal", "principal_verified_by"), ()),
)


def _defaults(cls: type) -> dict[str, object]:
    defaults: dict[str, object] = {}
    for f in fields(cls):
        if f.default is not MISSING:
            defaults[f.name] = f.default
        elif f.default_factory is not MISSING:
            defaults[f.name] = f.default_factory()
    return defaults


_RECORD_DEFAULTS = _defaults(DecisionRecord)
_REASON_DEFAULTS = _defaults(ReasonEntry)


def earlier_canonical_forms(record: DecisionRecord) -> Iterator[bytes]:
    """The canonical JSON the record had before each change above, newest change first, for as
    long as it holds the fields removed at their defaults (no record of that time could hold
    others)."""
    body = asdict(record)
    for top, in_reasons in reversed(RECORD_FIELD_CHANGES):
        if any(body.pop(name) != _RECORD_DEFAULTS[name] for name in top):
            return
        for reason in body["reasons"]:
            if any(reason.pop(name) != _REASON_DEFAULTS[name] for name in in_reasons):
                return
        yield orjson.dumps(body, option=orjson.OPT_SORT_KEYS)


def earlier_canonical_json(record: DecisionRecord) -> bytes | None:
    """The form before the first change (what the oldest stores hold); None when the record
    could not have had it."""
    forms = list(earlier_canonical_forms(record))
    return forms[-1] if len(forms) == len(RECORD_FIELD_CHANGES) else None


def decision_row(
    record: DecisionRecord, stored_at_us: int, body: bytes | None = None
) -> list[object]:
    """The ``decisions`` row for a record, in DECISION_COLUMNS order (without seq and chain);
    ``body`` is its canonical JSON, today's form unless given (``earlier_canonical_json``)."""
    body = canonical_record_json(record) if body is None else body
    r = record
    return [
        r.decision_id,
        r.request_id,
        r.decision_point,
        r.entity_key,
        r.received_at_us,
        r.decided_at_us,
        r.model_name,
        r.model_version,
        r.model_sha256,
        r.arm,
        r.config_version,
        r.fallback_reason,
        r.score,
        r.decision,
        r.policy_version,
        r.trace_id,
        r.features_sha256,
        stored_at_us,
        hashlib.sha256(body).hexdigest(),
        body.decode(),
        principal_reason(record),
    ]


@dataclass(frozen=True, slots=True)
class ChainedTable:
    """A table whose rows are chain entries.

    ``fields`` are columns copied from the body's keys of the same name; ``key`` is the primary
    key, taken from the body or, when ``key_is_sha`` is set, the entry's sha256 (content-addressed
    entries). ``time_column`` is the time retention counts from; ``purged`` is False for tables
    kept beyond retention.
    """

    name: str
    key: str
    fields: tuple[str, ...]
    time_column: str
    purged: bool = True
    key_is_sha: bool = False

    @property
    def columns(self) -> tuple[str, ...]:
        key = (self.key,) if self.key_is_sha else ()
        tail = ("recorded_at_us", "seq", "entry_sha256", "chain_sha256", "body")
        return (*key, *self.fields, *tail)

    def row(
        self, body: dict[str, Any], sha: str, recorded_at_us: int, seq: int, chain: str, text: str
    ) -> list[object]:
        key: list[object] = [sha] if self.key_is_sha else []
        return [*key, *(body[f] for f in self.fields), recorded_at_us, seq, sha, chain, text]


DECISIONS = ChainedTable("decisions", "decision_id", (), "decided_at_us")

SEQ_TABLES: dict[str, ChainedTable] = {
    "decisions": DECISIONS,
    "overrides": ChainedTable(
        "overrides",
        "override_id",
        ("override_id", "decision_id", "reviewer", "at_us", "new_decision", "reason"),
        "recorded_at_us",
    ),
    "outcomes": ChainedTable(
        "outcomes",
        "outcome_id",
        ("outcome_id", "decision_id", "label", "at_us", "source"),
        "recorded_at_us",
    ),
    "route_changes": ChainedTable(
        "route_changes",
        "change_id",
        ("changed_at_us", "config_version"),
        "changed_at_us",
        purged=False,
        key_is_sha=True,
    ),
    "purges": ChainedTable(
        "purges",
        "purge_id",
        ("run_at_us", "cutoff_us", "boundary_seq", "boundary_chain_sha256"),
        "run_at_us",
        key_is_sha=True,
    ),
    # Schema version 9: approvals and revocations of model versions (issue 25), kept beyond
    # retention like route changes: who approved what a gateway served must outlive decisions.
    "approvals": ChainedTable(
        "approvals",
        "approval_id",
        ("approval_id", "action", "artifact_sha256", "principal", "at_us"),
        "at_us",
        purged=False,
    ),
    # Schema version 7: who called the store's API, in the chain like what they read, so that
    # an access-log row edited or deleted is caught by verify as any other entry is.
    "access_log": ChainedTable(
        "access_log",
        "access_id",
        ("access_id", "at_us", "principal", "method", "outcome"),
        "at_us",
    ),
}
