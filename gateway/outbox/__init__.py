"""A durable local outbox for decision records, and its sender to the lineage store.

The gateway answers a decision only after its record is fsync'd here; a sender ships records as
OTLP spans to the lineage store until acknowledged, and a restart resends what was not. See
docs/outbox.md for sizing, the policy when full, metrics and recovery.
"""

from gateway.outbox.config import OutboxConfig
from gateway.outbox.errors import OutboxClosed, OutboxError, OutboxFull
from gateway.outbox.metrics import OutboxMetrics
from gateway.outbox.outbox import Outbox
from gateway.outbox.sink import OutboxSink
from lineage.v1.record import canonical_json

__all__ = [
    "Outbox",
    "OutboxClosed",
    "OutboxConfig",
    "OutboxError",
    "OutboxFull",
    "OutboxMetrics",
    "OutboxSink",
    "canonical_json",
]
