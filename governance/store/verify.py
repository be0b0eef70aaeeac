"""Checks the store against its hash chain and external checkpoints; names the first bad entry.

Runs inside one read snapshot. The walk starts at the latest purge boundary (or the genesis) and
goes through every chained table merged by ``seq``: each entry's sha256 must match its stored
JSON, every column must match what that JSON says, seq must run on without gaps or repeats, and
each chain hash must follow from the previous one. Then the chain's head and each checkpoint
taken after the boundary must match. An edit, deletion, insertion, reordering or truncation of
entries breaks at least one of these.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Sequence
from typing import Any

import orjson
import pydantic

from governance.chain import GENESIS, Checkpoint, link, sha256_hex
from governance.store.base import VerifyReport
from governance.store.engine import Connection
from governance.store.reason_index import reason_entries
from governance.store.tables import (
    DECISION_COLUMNS,
    SEQ_TABLES,
    ChainedTable,
    decision_row,
    earlier_canonical_forms,
)
from lineage.v1.record import record_from_json

_ROWS_PER_PAGE = 5000
_JSON_AT = DECISION_COLUMNS.index("record_json")
_KIND = {
    "decisions": "decision",
    "overrides": "override",
    "outcomes": "outcome",
    "route_changes": "route change",
    "purges": "purge",
    "access_log": "access log entry",
    "approvals": "approval",
}


class _ChainBroken(Exception):
    def __init__(self, seq: int, message: str) -> None:
        super().__init__(message)
        self.seq = seq


def _columns(table: ChainedTable) -> tuple[str, ...]:
    if table.name == "decisions":
        return (*DECISION_COLUMNS, "seq", "chain_sha256")
    return table.columns


def _pages(
    db: Connection, table: ChainedTable, after: int
) -> Iterator[tuple[int, str, tuple[Any, ...]]]:
    """(seq, table name, row) in seq order, fetched a page at a time."""
    columns = _columns(table)
    seq_at = columns.index("seq")
    sql = (
        f"SELECT {', '.join(columns)} FROM {table.name} WHERE seq > ? "
        f"ORDER BY seq LIMIT {_ROWS_PER_PAGE}"
    )
    while True:
        rows = db.execute(sql, (after,)).fetchall()
        yield from ((int(row[seq_at]), table.name, tuple(row)) for row in rows)
        if len(rows) < _ROWS_PER_PAGE:
            return
        after = int(rows[-1][seq_at])


def _entry_label(table: str, key: object, seq: int) -> str:
    return f"seq {seq} ({_KIND[table]} {key})"


class _ReasonEntries:
    """An order-free digest of decision_reasons entries (a count and a sum of their hashes), so
    the entries the records give and those the table holds compare in one pass of each."""

    def __init__(self) -> None:
        self.count = 0
        self.total = 0

    def add(self, code: object, decided_at_us: object, decision_id: object) -> None:
        text = f"{code}\x00{int(str(decided_at_us))}\x00{decision_id}"
        self.total = (self.total + int(sha256_hex(text.encode()), 16)) % 2**256
        self.count += 1


def _reason_table(db: Connection) -> _ReasonEntries:
    held = _ReasonEntries()
    sql = (
        "SELECT code, decided_at_us, decision_id FROM decision_reasons WHERE "
        "(code, decided_at_us, decision_id) > (?, ?, ?) "
        f"ORDER BY code, decided_at_us, decision_id LIMIT {_ROWS_PER_PAGE}"
    )
    after: tuple[object, ...] = ("", -(2**62), "")
    while True:
        rows = db.execute(sql, after).fetchall()
        for row in rows:
            held.add(*row)
        if len(rows) < _ROWS_PER_PAGE:
            return held
        after = tuple(rows[-1])


def _check_decision(row: tuple[Any, ...], seq: int, reasons: _ReasonEntries | None = None) -> str:
    """Returns the entry hash after checking every column against the stored record JSON."""
    values = dict(zip(DECISION_COLUMNS, row, strict=False))
    name = _entry_label("decisions", values["decision_id"], seq)
    text = str(values["record_json"])
    sha = sha256_hex(text.encode())
    if sha != values["record_sha256"]:
        raise _ChainBroken(
            seq, f"{name}: the stored record does not match its sha256 (record edited)"
        )
    try:
        record = record_from_json(text)
    except pydantic.ValidationError:
        raise _ChainBroken(
            seq, f"{name}: the stored record is not a valid decision record"
        ) from None
    derived = decision_row(record, int(values["stored_at_us"]))
    if derived[_JSON_AT] != text:
        # Stored before the record had its newer fields: the JSON of its time is canonical too.
        stored = text.encode()
        for earlier in earlier_canonical_forms(record):
            if earlier == stored:
                derived = decision_row(record, int(values["stored_at_us"]), earlier)
                break
    for column, want in zip(DECISION_COLUMNS, derived, strict=True):
        if values[column] != want:
            raise _ChainBroken(
                seq, f"{name}: column {column} differs from the stored record (edited)"
            )
    if reasons is not None:
        for entry in reason_entries(record):
            reasons.add(*entry)
    return sha


def _check_entry(table: ChainedTable, row: tuple[Any, ...], seq: int) -> str:
    values = dict(zip(table.columns, row, strict=True))
    name = _entry_label(table.name, values[table.key], seq)
    text = str(values["body"])
    sha = sha256_hex(text.encode())
    if sha != values["entry_sha256"]:
        raise _ChainBroken(
            seq, f"{name}: the stored entry does not match its sha256 (entry edited)"
        )
    body = orjson.loads(text)
    if table.key_is_sha and values[table.key] != sha:
        raise _ChainBroken(seq, f"{name}: its id is not its content's sha256 (edited)")
    for field in table.fields:
        if values[field] != body.get(field):
            raise _ChainBroken(
                seq, f"{name}: column {field} differs from the stored entry (edited)"
            )
    return sha


def _boundary(db: Connection) -> tuple[int, str]:
    row = db.run(
        "SELECT boundary_seq, boundary_chain_sha256 FROM purges ORDER BY seq DESC LIMIT 1"
    ).fetchone()
    return (0, GENESIS) if row is None else (int(row[0]), str(row[1]))


def _stray_rows(db: Connection, boundary: int) -> None:
    """Rows outside the chain: without a seq, or (in purged tables) at or below the boundary."""
    for table in SEQ_TABLES.values():
        row = db.run(
            f"SELECT {table.key} FROM {table.name} WHERE seq IS NULL OR chain_sha256 IS NULL"
        ).fetchone()
        if row is not None:
            raise _ChainBroken(
                0, f"{_KIND[table.name]} {row[0]} has no place in the chain (inserted)"
            )
        if table.purged and boundary:
            row = db.execute(
                f"SELECT {table.key}, seq FROM {table.name} WHERE seq <= ? ORDER BY seq",
                (boundary,),
            ).fetchone()
            if row is not None:
                raise _ChainBroken(
                    int(row[1]),
                    f"{_entry_label(table.name, row[0], int(row[1]))}: present below the purge "
                    f"boundary {boundary} (inserted)",
                )


def verify(
    db: Connection, checkpoints: Sequence[Checkpoint], reason_index: bool = True
) -> VerifyReport:
    """``reason_index``: the schema has decision_reasons (version 6), checked against the
    records: an entry deleted, added or changed would hide a decision from, or add one to,
    queries by reason code."""
    report = VerifyReport()
    reasons = _ReasonEntries() if reason_index else None
    row = db.run("SELECT seq, chain_sha256 FROM chain_head WHERE id = 1").fetchone()
    head_seq, head_chain = int(row[0]), str(row[1])
    report.head = Checkpoint(head_seq, head_chain, 0)
    boundary, chain = _boundary(db)
    report.boundary_seq = boundary
    wanted = {c.size for c in checkpoints if c.size > boundary}
    chains: dict[int, str] = {}
    seq = boundary
    try:
        _stray_rows(db, boundary)
        streams = [_pages(db, t, boundary) for t in SEQ_TABLES.values()]
        for at, name, row in heapq.merge(*streams, key=lambda e: e[0]):
            table = SEQ_TABLES[name]
            columns = _columns(table)
            key = row[columns.index(table.key)]
            if at == seq:
                raise _ChainBroken(
                    at, f"{_entry_label(table.name, key, at)}: seq {at} is used twice (inserted)"
                )
            if at != seq + 1:
                missing = f"seq {seq + 1}" + (f" to {at - 1}" if at - 1 > seq + 1 else "")
                raise _ChainBroken(
                    seq + 1,
                    f"seq {seq + 1}: entry missing ({missing} deleted); next present is "
                    f"{_entry_label(table.name, key, at)}",
                )
            if at > head_seq:
                raise _ChainBroken(
                    at, f"{_entry_label(table.name, key, at)}: beyond the chain head {head_seq}"
                )
            if table.name == "decisions":
                sha = _check_decision(row[: len(DECISION_COLUMNS)], at, reasons)
            else:
                sha = _check_entry(table, row, at)
            chain = link(chain, sha, at)
            if chain != row[columns.index("chain_sha256")]:
                raise _ChainBroken(
                    at,
                    f"{_entry_label(table.name, key, at)}: chain hash does not follow from the "
                    "previous entry (entries reordered, inserted or deleted before it)",
                )
            seq = at
            report.checked += 1
            if at in wanted:
                chains[at] = chain
        if seq < head_seq:
            raise _ChainBroken(
                seq + 1, f"seq {seq + 1} to {head_seq}: entries missing at the end (truncated)"
            )
        if chain != head_chain:
            raise _ChainBroken(seq, f"seq {seq}: the chain head record does not match the entries")
        _check_checkpoints(report, checkpoints, boundary, _boundary(db)[1], chains, seq)
        if reasons is not None:
            held = _reason_table(db)
            if (held.count, held.total) != (reasons.count, reasons.total):
                raise _ChainBroken(
                    0,
                    f"decision_reasons holds {held.count} entries, the stored records give "
                    f"{reasons.count}{'' if held.count != reasons.count else ' others'} "
                    "(the reason index edited, or decisions deleted with the chain head moved)",
                )
    except _ChainBroken as bad:
        report.bad_seq = bad.seq
        report.problem = str(bad)
    return report


def _check_checkpoints(
    report: VerifyReport,
    checkpoints: Sequence[Checkpoint],
    boundary: int,
    boundary_chain: str,
    chains: dict[int, str],
    last: int,
) -> None:
    for cp in sorted(checkpoints, key=lambda c: c.size):
        if cp.size < boundary:
            report.checkpoints_skipped += 1
            continue
        report.checkpoints_checked += 1
        if cp.size > last:
            raise _ChainBroken(
                last + 1,
                f"seq {last + 1} to {cp.size}: entries missing (truncated); a checkpoint "
                f"covers {cp.size} entries, the store ends at {last}",
            )
        got = boundary_chain if cp.size == boundary else chains.get(cp.size, "")
        if got != cp.head_sha256:
            raise _ChainBroken(
                cp.size,
                f"seq {cp.size}: chain hash differs from the checkpoint (entries up to seq "
                f"{cp.size} were rewritten)",
            )
