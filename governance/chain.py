"""The hash chain over everything the store appends, and checkpoints of its head.

Every appended entry (a decision, an override, an outcome, a route change, a purge run) gets the
next sequence number ``seq`` (1, 2, 3, ... with no gaps) and a chain hash::

    chain(seq) = sha256(chain(seq - 1) || entry_sha256 || seq as 8 bytes big-endian)
    chain(0)   = 32 zero bytes

where ``entry_sha256`` is the sha256 of the entry's canonical JSON. Editing, deleting, inserting
or reordering any entry changes every chain hash from there on; a checkpoint (size, head hash,
time) kept outside the database lets ``scoregate lineage verify`` detect a rewrite of the whole
chain and a truncation of its tail.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import orjson

GENESIS = "00" * 32


def link(previous: str, entry_sha256: str, seq: int) -> str:
    """The chain hash of entry ``seq`` (hex), given the previous chain hash (hex)."""
    data = bytes.fromhex(previous) + bytes.fromhex(entry_sha256) + seq.to_bytes(8, "big")
    return hashlib.sha256(data).hexdigest()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The chain's head at one moment: ``size`` entries appended so far, ending in ``head``."""

    size: int
    head_sha256: str
    at_us: int

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))


def append_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    """Appends one JSON line and fsyncs it: the file is the export that outlives the database."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as f:
        f.write(checkpoint.to_json() + b"\n")
        f.flush()
        os.fsync(f.fileno())


def read_checkpoints(path: Path) -> list[Checkpoint]:
    """All checkpoints in a JSON-lines file, oldest first; a torn last line is ignored."""
    found: list[Checkpoint] = []
    for line in path.read_bytes().splitlines():
        try:
            data = orjson.loads(line)
            found.append(
                Checkpoint(int(data["size"]), str(data["head_sha256"]), int(data["at_us"]))
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            continue
    return found
