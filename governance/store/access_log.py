"""The access log's rows: appended a batch per write transaction, read by time, principal,
method or decision id, oldest first, paged by chain position (``seq``)."""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from governance.store.clock import now_us
from governance.store.engine import Connection
from governance.store.entries import AccessEntry, AccessFilter, AccessPage
from governance.store.hash_chain import append_entry, lock_head
from governance.store.tables import SEQ_TABLES

_TABLE = SEQ_TABLES["access_log"]


def append_access(db: Connection, entries: Sequence[AccessEntry]) -> int:
    """Appends every entry in one transaction (one commit, one fsync for the batch); returns
    the last seq."""
    seq = 0
    with db.write_transaction():
        lock_head(db)
        now = now_us()
        for entry in entries:
            seq = append_entry(db, _TABLE, entry.body(), now)
    return seq


def list_access(db: Connection, selection: AccessFilter, limit: int, after_seq: int) -> AccessPage:
    where = ["at_us >= ?", "at_us < ?", "seq > ?"]
    params: list[object] = [selection.since_us, selection.until_us, after_seq]
    if selection.principal:
        where.append("principal = ?")
        params.append(selection.principal)
    if selection.method:
        where.append("method = ?")
        params.append(selection.method)
    if selection.decision_id:
        # A narrowing on the canonical JSON; the exact test on the parsed list follows.
        where.append("body LIKE ?")
        params.append(f'%"{selection.decision_id}"%')
    rows = db.execute(
        f"SELECT body, recorded_at_us, seq FROM access_log WHERE {' AND '.join(where)} "
        "ORDER BY seq LIMIT ?",
        (*params, limit + 1),
    ).fetchall()
    entries = [AccessEntry.from_body(orjson.loads(r[0]), int(r[1]), int(r[2])) for r in rows]
    page = AccessPage()
    if len(entries) > limit:
        entries = entries[:limit]
        page.next_page_token = str(entries[-1].seq)
    if selection.decision_id:
        entries = [e for e in entries if selection.decision_id in e.decision_ids]
    page.entries = entries
    return page
