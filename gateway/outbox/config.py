"""How an outbox is sized and how its sender behaves; the gateway's settings fill it in."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from security.tls import ClientTls

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class OutboxConfig:
    directory: Path
    """Holds segments, the cursor and the dead-letter file: a local disk that honours fsync."""
    endpoint: str = ""
    """OTLP/gRPC endpoint (host:port) of the lineage store; empty: records are kept, not sent."""
    tls: ClientTls | None = None
    """TLS to the lineage store (its CA, and this gateway's client certificate); None: h2c."""
    max_unacked_bytes: int = 1024 * MIB
    """Bound on framed bytes appended and not yet acknowledged by the store; beyond it, shed."""
    max_unacked_records: int = 1_000_000
    """Bound on records appended and not yet acknowledged by the store; beyond it, shed."""
    segment_bytes: int = 64 * MIB
    """Size at which the writer starts a new segment; a fully acknowledged one is deleted."""
    preallocate: bool = True
    """Zero-fill each segment a few MiB ahead of the writer, so that a group's fdatasync commits
    data only (``gateway.outbox.prealloc``), a shorter sync on ext4 and XFS. Off for
    copy-on-write filesystems (btrfs, ZFS), where overwriting gains nothing."""
    sync: Literal["process", "loop", "thread"] = "process"
    """Where appends are fdatasync'd: by a helper process while the event loop goes on
    (``gateway.outbox.process_writer``), on the event loop once per loop pass, or by a writer
    thread (``gateway.outbox.writer``). The event loop writes the frames in the first two."""
    batch_records: int = 512
    """Most records in one Export call."""
    batch_bytes: int = 1 * MIB
    """About the most record bytes in one Export call (gRPC's default receive limit is 4 MiB)."""
    linger_s: float = 0.2
    """How long the sender lets a partial batch grow before sending it. Each Export costs the
    store a commit (an fsync) and the outbox a cursor fsync; sending every record alone at low
    load put three fsyncs on the disk per decision, in front of the next decision's own, and
    each Export has a fixed CPU cost in the store, which a longer linger shares among more
    records (docs/performance-log.md)."""
    export_timeout_s: float = 10.0
    """Deadline of one Export call."""
    backoff_initial_s: float = 0.05
    """First retry delay; doubles per failure up to ``backoff_max_s``, jittered +-50%."""
    backoff_max_s: float = 5.0
    """Longest retry delay: a store back after an outage is reached within about this."""
    poison_attempts: int = 5
    """Failures with a record-specific status (INVALID_ARGUMENT, INTERNAL, ...) a lone record
    gets before it goes to the dead-letter file instead of blocking the ones behind it."""
    instance: str = ""
    """The gateway instance, put on the OTLP resource as service.instance.id."""
