"""The store's side of the hash chain (``governance.chain``): the ``chain_head`` row and appends.

Every append locks the one ``chain_head`` row first, inside its write transaction, so writers in
several processes on one PostgreSQL database still number entries without gaps (on SQLite the
write transaction holds the lock already).
"""

from __future__ import annotations

from typing import Any

from governance.chain import link, sha256_hex
from governance.errors import StoreUnavailable
from governance.store.engine import Connection
from governance.store.entries import canonical
from governance.store.tables import SEQ_TABLES, ChainedTable


def lock_head(db: Connection) -> tuple[int, str]:
    """The chain's (seq, chain hash), locked until the write transaction ends."""
    row = db.run(
        "SELECT seq, chain_sha256 FROM chain_head WHERE id = 1" + db.dialect.lock_suffix
    ).fetchone()
    return int(row[0]), str(row[1])


def read_head(db: Connection) -> tuple[int, str]:
    """The chain's (seq, chain hash), for a reader: no lock."""
    row = db.run("SELECT seq, chain_sha256 FROM chain_head WHERE id = 1").fetchone()
    return int(row[0]), str(row[1])


def move_head(db: Connection, seq: int, chain: str) -> None:
    db.execute("UPDATE chain_head SET seq = ?, chain_sha256 = ? WHERE id = 1", (seq, chain))


def append_entry(db: Connection, table: ChainedTable, body: dict[str, Any], now: int) -> int:
    """Appends one entry inside the caller's write transaction; returns its seq."""
    seq, chain = lock_head(db)
    data = canonical(body)
    sha = sha256_hex(data)
    seq += 1
    chain = link(chain, sha, seq)
    row = table.row(body, sha, now, seq, chain, data.decode())
    marks = ", ".join("?" * len(row))
    db.execute(f"INSERT INTO {table.name} ({', '.join(table.columns)}) VALUES ({marks})", row)
    move_head(db, seq, chain)
    return seq


def chain_hash_at(db: Connection, seq: int) -> str:
    """The chain hash stored with entry ``seq``, whichever table holds it."""
    for table in SEQ_TABLES.values():
        row = db.execute(f"SELECT chain_sha256 FROM {table.name} WHERE seq = ?", (seq,)).fetchone()
        if row is not None:
            return str(row[0])
    raise StoreUnavailable(f"chain entry {seq} is missing; run scoregate lineage verify")
