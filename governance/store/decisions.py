"""Decision records: stored once per decision id and linked into the chain, and the queries over
them (one record, a listing with counts, the traffic a model version saw)."""

from __future__ import annotations

import hashlib
import operator
from collections.abc import Sequence

from governance.chain import link
from governance.errors import InvalidRequest
from governance.store.base import Conflict, InsertResult, StoredDecision, TrafficSeen
from governance.store.clock import now_us
from governance.store.drift_counts import DriftCounter
from governance.store.engine import Connection
from governance.store.entity_index import EntityIndex, entity_condition
from governance.store.entries import (
    Count,
    DecisionFilter,
    DecisionPage,
    DecisionSummary,
    Outcome,
    Override,
)
from governance.store.hash_chain import lock_head, move_head
from governance.store.reason_index import ReasonIndex, reason_condition
from governance.store.tables import (
    DECISION_COLUMNS,
    LEGACY_DECISION_COLUMNS,
    earlier_canonical_forms,
    principal_reason,
)
from lineage.v1.record import DecisionRecord, canonical_json, record_from_json

# Well under SQLite's bound-parameter limit.
_LOOKUP_CHUNK = 500
_SHA_AT = DECISION_COLUMNS.index("record_sha256")
_INSERT_COLUMNS = (*DECISION_COLUMNS, "seq", "chain_sha256")
_INSERT = (
    f"INSERT INTO decisions ({', '.join(_INSERT_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(_INSERT_COLUMNS))})"
)
_LEGACY_INSERT_COLUMNS = (*LEGACY_DECISION_COLUMNS, "seq", "chain_sha256")
_LEGACY_INSERT = (
    f"INSERT INTO decisions ({', '.join(_LEGACY_INSERT_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(_LEGACY_INSERT_COLUMNS))})"
)
_PRINCIPAL_AT = DECISION_COLUMNS.index("principal_reason")
_SUMMARY_COLUMNS = (
    "decision_id, decided_at_us, decision_point, entity_key, model_name, model_version, arm, "
    "score, decision"
)

# The decisions columns copied from the record, in DECISION_COLUMNS order up to stored_at_us.
_ROW_FIELDS = DECISION_COLUMNS[: DECISION_COLUMNS.index("stored_at_us")]
_row_values = operator.attrgetter(*_ROW_FIELDS)
assert DECISION_COLUMNS[len(_ROW_FIELDS) :] == (
    "stored_at_us",
    "record_sha256",
    "record_json",
    "principal_reason",
)


def fast_decision_row(record: DecisionRecord, stored_at_us: int) -> list[object]:
    """``tables.decision_row``'s exact row in one native orjson pass, without ``asdict``'s deep
    copy (a test holds the two equal; ``verify`` re-derives rows with ``decision_row``)."""
    body = canonical_json(record)
    return [
        *_row_values(record),
        stored_at_us,
        hashlib.sha256(body).hexdigest(),
        body.decode(),
        principal_reason(record),
    ]


def _insert_rows(db: Connection, reasons: ReasonIndex, rows: list[list[object]]) -> None:
    if reasons.enabled:
        db.execute_many(_INSERT, rows)
    else:
        db.execute_many(_LEGACY_INSERT, [r[:_PRINCIPAL_AT] + r[_PRINCIPAL_AT + 1 :] for r in rows])


def insert_decisions(
    db: Connection,
    entities: EntityIndex,
    reasons: ReasonIndex,
    records: Sequence[DecisionRecord],
    drift: DriftCounter | None = None,
) -> InsertResult:
    """Stores the records not stored yet in one write transaction, linked in the order given;
    a record offered again counts as a duplicate (same content) or a conflict (different).
    The new ones are added to the monitoring counters in the same transaction."""
    result = InsertResult()
    stored_at = now_us()
    batch: dict[str, list[object]] = {}
    offered: dict[str, DecisionRecord] = {}
    for record in records:
        row = fast_decision_row(record, stored_at)
        earlier = batch.get(record.decision_id)
        if earlier is None:
            batch[record.decision_id] = row
            offered[record.decision_id] = record
        else:
            _count_offered_again(
                result, record.decision_id, str(earlier[_SHA_AT]), str(row[_SHA_AT])
            )
    with db.write_transaction():
        head_seq, head_chain = lock_head(db)
        new = _insert_all_as_new(db, reasons, batch, head_seq, head_chain)
        if new is None:
            # Some ids are stored already: look them up and link only the others.
            stored = _stored_record_hashes(db, list(batch))
            new = []
            seq, chain = head_seq, head_chain
            for decision_id, row in batch.items():
                if decision_id in stored:
                    _count_offered_again(
                        result,
                        decision_id,
                        stored[decision_id],
                        str(row[_SHA_AT]),
                        offered[decision_id],
                    )
                    continue
                seq += 1
                chain = link(chain, str(row[_SHA_AT]), seq)
                new.append([*row, seq, chain])
            if new:
                _insert_rows(db, reasons, new)
        recent = entities.recent
        if new:
            move_head(db, head_seq + len(new), str(new[-1][-1]))
            if entities.enabled:
                recent = entities.add(db, new, recent)
            if reasons.enabled:
                reasons.add(db, (offered[str(row[0])] for row in new))
            if drift is not None and drift.enabled:
                drift.add(db, (offered[str(row[0])] for row in new))
    entities.recent = recent
    result.inserted = len(new)
    return result


def _insert_all_as_new(
    db: Connection, reasons: ReasonIndex, batch: dict[str, list[object]], seq: int, chain: str
) -> list[list[object]] | None:
    """The common case without a lookup: inserts every row of ``batch`` as new, linked after
    (seq, chain). If any id is already stored, undoes that and returns None instead, as it
    does at once for a dialect without ``conflict_errors``."""
    conflict_errors = db.dialect.conflict_errors
    if not conflict_errors:
        return None
    new: list[list[object]] = []
    for row in batch.values():
        seq += 1
        chain = link(chain, str(row[_SHA_AT]), seq)
        new.append([*row, seq, chain])
    db.run("SAVEPOINT insert_fresh")
    try:
        _insert_rows(db, reasons, new)
    except conflict_errors:
        db.run("ROLLBACK TO SAVEPOINT insert_fresh")
        db.run("RELEASE SAVEPOINT insert_fresh")
        return None
    db.run("RELEASE SAVEPOINT insert_fresh")
    return new


def _stored_record_hashes(db: Connection, ids: list[str]) -> dict[str, str]:
    """decision id -> stored record sha256, for those of ``ids`` that are stored."""
    found: dict[str, str] = {}
    for start in range(0, len(ids), _LOOKUP_CHUNK):
        chunk = ids[start : start + _LOOKUP_CHUNK]
        marks = ", ".join("?" * len(chunk))
        found.update(
            db.execute(
                f"SELECT decision_id, record_sha256 FROM decisions WHERE decision_id IN ({marks})",
                chunk,
            ).fetchall()
        )
    return found


def _count_offered_again(
    result: InsertResult,
    decision_id: str,
    stored: str,
    offered: str,
    record: DecisionRecord | None = None,
) -> None:
    if stored == offered or (record is not None and _stored_in_earlier_form(record, stored)):
        result.duplicates += 1
    else:
        result.conflicts.append(Conflict(decision_id, stored, offered))


def _stored_in_earlier_form(record: DecisionRecord, stored: str) -> bool:
    """A record resent after an upgrade whose first copy was stored in the JSON of its time
    (``tables.earlier_canonical_forms``) is the same record, not a conflicting one."""
    return any(hashlib.sha256(b).hexdigest() == stored for b in earlier_canonical_forms(record))


def get_decision(db: Connection, decision_id: str) -> StoredDecision | None:
    row = db.execute(
        "SELECT record_json, stored_at_us, seq, chain_sha256, record_sha256 FROM decisions "
        "WHERE decision_id = ?",
        (decision_id,),
    ).fetchone()
    if row is None:
        return None
    overrides = tuple(
        Override(*r)
        for r in db.execute(
            "SELECT override_id, decision_id, reviewer, at_us, new_decision, reason, "
            "recorded_at_us, seq FROM overrides WHERE decision_id = ? ORDER BY at_us, seq",
            (decision_id,),
        ).fetchall()
    )
    outcomes = tuple(
        Outcome(*r)
        for r in db.execute(
            "SELECT outcome_id, decision_id, label, at_us, source, recorded_at_us, seq "
            "FROM outcomes WHERE decision_id = ? ORDER BY at_us, seq",
            (decision_id,),
        ).fetchall()
    )
    return StoredDecision(
        record_from_json(row[0]),
        int(row[1]),
        int(row[2] or 0),
        str(row[3] or ""),
        overrides,
        outcomes,
        str(row[4]),
    )


def list_decisions(
    db: Connection,
    entities: EntityIndex,
    reasons: ReasonIndex,
    s: DecisionFilter,
    limit: int,
    after: tuple[int, str] | None,
    descending: bool,
    with_counts: bool,
) -> DecisionPage:
    where = ["decided_at_us >= ?", "decided_at_us < ?"]
    params: list[object] = [s.since_us, s.until_us]
    if s.entity_key and entities.enabled:
        condition, condition_params = entity_condition(s.entity_key, s.since_us, s.until_us)
        where.append(condition)
        params += condition_params
    if s.reason_code:
        if not reasons.enabled:
            raise InvalidRequest("this store's schema has no reason index (before version 6)")
        condition, condition_params = reason_condition(
            s.reason_code, s.reason_any_rank, s.since_us, s.until_us
        )
        where.append(condition)
        params += condition_params
    for column, value in (
        ("entity_key", s.entity_key),
        ("model_name", s.model_name),
        ("model_version", s.model_version),
        ("decision_point", s.decision_point),
        ("decision", s.decision),
        ("request_id", s.request_id),
    ):
        if value:
            where.append(f"{column} = ?")
            params.append(value)
    selected = " AND ".join(where)
    page = DecisionPage()
    if with_counts:
        page.counts = [
            Count(*r)
            for r in db.execute(
                "SELECT model_name, model_version, arm, decision, COUNT(*) FROM decisions "
                f"WHERE {selected} GROUP BY model_name, model_version, arm, decision "
                "ORDER BY model_name, model_version, arm, decision",
                params,
            ).fetchall()
        ]
    if limit <= 0:
        return page
    keyset = ""
    page_params = list(params)
    op, order = ("<", "DESC") if descending else (">", "ASC")
    if after is not None:
        keyset = f" AND (decided_at_us {op} ? OR (decided_at_us = ? AND decision_id {op} ?))"
        page_params += [after[0], after[0], after[1]]
    rows = db.execute(
        f"SELECT {_SUMMARY_COLUMNS} FROM decisions WHERE {selected}{keyset} "
        f"ORDER BY decided_at_us {order}, decision_id {order} LIMIT ?",
        [*page_params, limit + 1],
    ).fetchall()
    page.decisions = [DecisionSummary(*r) for r in rows[:limit]]
    if len(rows) > limit:
        last = page.decisions[-1]
        page.next_page_token = f"{last.decided_at_us}/{last.decision_id}"
    return page


def traffic_seen(db: Connection, model_name: str, decision_point: str) -> list[TrafficSeen]:
    extra, params = ("", [model_name])
    if decision_point:
        extra, params = (" AND decision_point = ?", [model_name, decision_point])
    rows = db.execute(
        "SELECT decision_point, model_version, arm, MIN(decided_at_us), "
        "MAX(decided_at_us), COUNT(*) FROM decisions WHERE model_name = ?"
        f"{extra} GROUP BY decision_point, model_version, arm "
        "ORDER BY decision_point, MIN(decided_at_us)",
        params,
    ).fetchall()
    return [TrafficSeen(*r) for r in rows]
