"""What the sender needs of the outbox: the durable records after the cursor, and a way to
move the cursor. The sender depends on this, not on ``Outbox``, and the two are put together
by the composition root (``gateway.server``), so neither module imports the other."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from gateway.outbox.segments import Entry, Position


class DurableLog(Protocol):
    @property
    def directory(self) -> Path: ...

    @property
    def unacked_records(self) -> int: ...

    async def next_batch(self, max_records: int, max_bytes: int, wait: bool = True) -> list[Entry]:
        """The durable records after the cursor, waiting for some if there are none."""
        ...

    async def acknowledge(self, end: Position, records: int, size: int) -> None:
        """The store has answered for everything before ``end``."""
        ...

    async def dead_letter(self, lines: list[bytes]) -> None:
        """Keeps records the store refused for good, durably, before they are acknowledged."""
        ...


class Delivery(Protocol):
    """A loop that ships the log's records until cancelled (``Sender.run``)."""

    async def run(self) -> None: ...
