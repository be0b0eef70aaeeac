"""What the store records besides decisions: overrides and outcomes of a decision, route changes,
approvals of model versions (all four chained) and model manifests (content-addressed, not
chained).

Each is idempotent: recording the same fact again finds the stored one and reports it as not new.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

import orjson

from governance.chain import sha256_hex
from governance.errors import DecisionNotFound, EntryConflict
from governance.store.clock import now_us
from governance.store.engine import Connection
from governance.store.entries import (
    Approval,
    Outcome,
    Override,
    RegisteredManifest,
    RouteChange,
    canonical,
)
from governance.store.hash_chain import append_entry, lock_head, read_head
from governance.store.tables import SEQ_TABLES, ChainedTable

_Annotation = TypeVar("_Annotation", Override, Outcome)

# No route change is effective this late: "every change" as an upper bound.
_END_OF_TIME_US = 2**62


class _AnnotationEntry(Protocol):
    @property
    def decision_id(self) -> str: ...

    def body(self) -> dict[str, object]: ...


def add_override(db: Connection, override: Override) -> tuple[Override, bool]:
    return _add_annotation(db, SEQ_TABLES["overrides"], override, Override)


def add_outcome(db: Connection, outcome: Outcome) -> tuple[Outcome, bool]:
    return _add_annotation(db, SEQ_TABLES["outcomes"], outcome, Outcome)


def _add_annotation(
    db: Connection,
    table: ChainedTable,
    entry: _AnnotationEntry,
    cls: Callable[..., _Annotation],
) -> tuple[_Annotation, bool]:
    """Appends an entry about a stored decision, keyed by its own id; the same entry again is
    found, another entry under that id is an EntryConflict."""
    key = table.key
    with db.write_transaction():
        lock_head(db)  # takes the append lock before looking
        exists = db.execute(
            "SELECT 1 FROM decisions WHERE decision_id = ?", (entry.decision_id,)
        ).fetchone()
        if exists is None:
            raise DecisionNotFound(f"no decision with id {entry.decision_id} in the lineage store")
        row = db.execute(
            f"SELECT body, recorded_at_us, seq FROM {table.name} WHERE {key} = ?",
            (getattr(entry, key),),
        ).fetchone()
        body = entry.body()
        if row is not None:
            if orjson.loads(row[0]) != body:
                raise EntryConflict(
                    f"{key} {getattr(entry, key)} is already recorded with different content"
                )
            fields = {k: v for k, v in body.items() if k != "kind"}
            return cls(**fields, recorded_at_us=int(row[1]), seq=int(row[2])), False
        now = now_us()
        seq = append_entry(db, table, body, now)
    fields = {k: v for k, v in body.items() if k != "kind"}
    return cls(**fields, recorded_at_us=now, seq=seq), True


def add_route_change(db: Connection, change: RouteChange) -> tuple[RouteChange, bool]:
    """Appends a route change; its id is its content's sha256, so a resent change is found."""
    body = change.body()
    change_id = sha256_hex(canonical(body))
    with db.write_transaction():
        lock_head(db)
        row = db.execute(
            "SELECT recorded_at_us, seq FROM route_changes WHERE change_id = ?",
            (change_id,),
        ).fetchone()
        if row is not None:
            return RouteChange.from_body(body, change_id, int(row[0]), int(row[1])), False
        now = now_us()
        seq = append_entry(db, SEQ_TABLES["route_changes"], body, now)
    return RouteChange.from_body(body, change_id, now, seq), True


def route_changes(db: Connection, until_us: int | None) -> list[RouteChange]:
    bound = until_us if until_us is not None else _END_OF_TIME_US
    rows = db.execute(
        "SELECT body, change_id, recorded_at_us, seq FROM route_changes "
        "WHERE changed_at_us <= ? ORDER BY changed_at_us, seq",
        (bound,),
    ).fetchall()
    return [RouteChange.from_body(orjson.loads(r[0]), r[1], r[2], r[3]) for r in rows]


def route_change_at(db: Connection, at_us: int) -> RouteChange | None:
    r = db.execute(
        "SELECT body, change_id, recorded_at_us, seq FROM route_changes "
        "WHERE changed_at_us <= ? ORDER BY changed_at_us DESC, seq DESC LIMIT 1",
        (at_us,),
    ).fetchone()
    return None if r is None else RouteChange.from_body(orjson.loads(r[0]), *r[1:])


def put_manifest(db: Connection, manifest: RegisteredManifest) -> tuple[RegisteredManifest, bool]:
    """Keeps the first manifest registered for an artifact; a later one finds that."""
    with db.write_transaction():
        # Not chained: the append lock makes this look-up-then-insert safe against writers in
        # other processes.
        lock_head(db)
        found = get_manifest(db, manifest.artifact_sha256)
        if found is not None:
            return found, False
        db.execute(
            "INSERT INTO manifests (artifact_sha256, name, version, manifest_json, "
            "registered_at_us) VALUES (?, ?, ?, ?, ?)",
            (
                manifest.artifact_sha256,
                manifest.name,
                manifest.version,
                manifest.manifest_json,
                manifest.registered_at_us,
            ),
        )
    return manifest, True


def get_manifest(db: Connection, artifact_sha256: str) -> RegisteredManifest | None:
    row = db.execute(
        "SELECT artifact_sha256, name, version, manifest_json, registered_at_us "
        "FROM manifests WHERE artifact_sha256 = ?",
        (artifact_sha256,),
    ).fetchone()
    return None if row is None else RegisteredManifest(*row)


def manifests_named(db: Connection, name: str, version: str) -> list[RegisteredManifest]:
    """Every manifest registered as ``name`` ``version`` (a rebuilt artifact is another one)."""
    rows = db.execute(
        "SELECT artifact_sha256, name, version, manifest_json, registered_at_us "
        "FROM manifests WHERE name = ? AND version = ? ORDER BY registered_at_us",
        (name, version),
    ).fetchall()
    return [RegisteredManifest(*r) for r in rows]


def add_approval(db: Connection, approval: Approval) -> Approval:
    """Appends an approval or a revocation; each call is its own entry (its id is derived from
    its content, time included), so approving twice is recorded twice and counted once."""
    with db.write_transaction():
        now = now_us()
        seq = append_entry(db, SEQ_TABLES["approvals"], approval.body(), now)
        _, chain = read_head(db)
    return Approval.from_body(approval.body(), now, seq, chain)


def approvals_for(db: Connection, artifact_sha256: str) -> list[Approval]:
    """Every approval and revocation of an artifact, in chain order."""
    rows = db.execute(
        "SELECT body, recorded_at_us, seq, chain_sha256 FROM approvals "
        "WHERE artifact_sha256 = ? ORDER BY seq",
        (artifact_sha256,),
    ).fetchall()
    return [Approval.from_body(orjson.loads(r[0]), int(r[1]), int(r[2]), str(r[3])) for r in rows]
