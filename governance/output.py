"""How ``scoregate lineage`` prints answers: an aligned table, CSV, or the message as JSON."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import UTC, datetime

from google.protobuf import json_format
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

FORMATS = ("table", "json", "csv")

Row = dict[str, str]


def when(ts: Timestamp) -> str:
    """ISO 8601 UTC to the microsecond, e.g. 2025-11-23T12:53:20.123457Z."""
    us = ts.seconds * 1_000_000 + ts.nanos // 1000
    moment = datetime.fromtimestamp(us // 1_000_000, UTC).replace(microsecond=us % 1_000_000)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_when(text: str) -> Timestamp:
    """ISO 8601; a time without an offset is UTC. Raises ValueError naming the text."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO 8601 time such as 2025-11-23T14:03:00Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    ts = Timestamp()
    ts.FromDatetime(moment.astimezone(UTC))
    return ts


def table(rows: Sequence[Row], columns: Sequence[str] | None = None) -> str:
    if not rows:
        return "(none)"
    names = list(columns or rows[0])
    widths = {c: max(len(c), *(len(r.get(c, "")) for r in rows)) for c in names}
    lines = ["  ".join(c.upper().replace("_", " ").ljust(widths[c]) for c in names).rstrip()]
    lines += ["  ".join(r.get(c, "").ljust(widths[c]) for c in names).rstrip() for r in rows]
    return "\n".join(lines)


def as_csv(rows: Sequence[Row], columns: Sequence[str] | None = None) -> str:
    out = io.StringIO()
    names = list(columns or (rows[0] if rows else []))
    writer = csv.DictWriter(out, fieldnames=names, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().rstrip("\n")


def as_json(message: Message) -> str:
    return json_format.MessageToJson(message, preserving_proto_field_name=True, indent=2)


def pairs(rows: Sequence[tuple[str, str]]) -> str:
    """A two-column label/value view."""
    width = max((len(label) for label, _ in rows), default=0)
    return "\n".join(f"{label:<{width}}  {value}" for label, value in rows)
