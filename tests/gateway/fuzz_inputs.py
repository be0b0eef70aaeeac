"""Seeded request bodies for the gateway's fuzz suite (test_fuzz.py), and the oracle that says,
from docs/api.md's rules alone, what each body must get back.

Every case is a method and the exact bytes sent (a generic call with identity serializers), so a
malformed body and a structurally valid one with bad values go the same way. The oracle parses
the bytes with the same protobuf library the gateway uses and applies the documented checks in
the gateway's documented order: the body (size, parse), the batch's shape, the call's own fields,
the decision point and pinned version (NOT_FOUND), then each request's or row's ids and features.
It names every field at fault, so a refusal that names another field, or none, is a finding.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from random import Random
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from gateway.limits import (
    MAX_BATCH_ROWS,
    MAX_DECISION_POINT_CHARS,
    MAX_ENTITY_KEY_CHARS,
    MAX_FEATURES,
    MAX_MODEL_VERSION_CHARS,
    MAX_REQUEST_ID_CHARS,
    MAX_SCORE_BATCH_BYTES,
    MAX_SCORE_BYTES,
    MAX_STRING_VALUE_CHARS,
)
from runtimes.manifest import CategoryFeature, Manifest, NumberFeature
from scoring.v1 import scoring_pb2 as pb
from scoring.v1.requests import feature_value

SCORE = "/scoring.v1.ScoringService/Score"
SCORE_BATCH = "/scoring.v1.ScoringService/ScoreBatch"
BODY = "(request body)"
GRPC_MAX_RECEIVE_BYTES = 16 * 1024 * 1024
ANY = "*"
"""A field ending in ANY matches a field path that starts with what precedes it and goes on with
something visible: printable, not blank, no spaces at either end (a feature name the gateway
quotes or cuts: its exact form is presentation, not contract; that it can be read is)."""

OK = grpc.StatusCode.OK
INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND

Value = float | str | bool | None  # None: a FeatureValue with no kind set
Row = tuple[str, str, dict[str, Value]]

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_PLAIN_NAME = re.compile(r"[!-~]{1,64}")  # printable ASCII: the gateway shows such a name as is
_ABSENT = object()


# --- What a call must get -------------------------------------------------------------------


@dataclass(frozen=True)
class Expected:
    """The status a body must get; for a refusal every field at fault, in the gateway's order
    (only the first MAX_VIOLATIONS_SHOWN are shown); for an answered ScoreBatch each row's
    fields at fault (empty: the row is decided)."""

    code: grpc.StatusCode
    fields: tuple[str, ...] = ()
    rows: tuple[tuple[str, ...], ...] = ()
    request_ids: tuple[str, ...] = ()
    pinned: str = ""


@dataclass(frozen=True)
class Point:
    """A configured decision point: its primary version and the versions it can pin."""

    primary: str
    versions: Mapping[str, Manifest]


def matches(expected: str, got: str) -> bool:
    if expected.endswith(ANY):
        prefix = expected[: -len(ANY)]
        rest = got[len(prefix) :]
        return got.startswith(prefix) and visible(rest)
    return got == expected


def visible(text: str) -> bool:
    return bool(text) and text.isprintable() and text.strip() == text


def _id_fields(names_values: Sequence[tuple[str, str, int, bool]], prefix: str = "") -> list[str]:
    """docs/api.md, Limits: ids and keys 1..N characters (model_version may be empty), no
    control characters."""
    fields = []
    for name, value, limit, required in names_values:
        if (not value and required) or len(value) > limit or _CONTROL.search(value):
            fields.append(prefix + name)
    return fields


def _feature_path(name: str) -> str:
    return f"features.{name}" if _PLAIN_NAME.fullmatch(name) else f"features.{ANY}"


def feature_fields(manifest: Manifest, features: Mapping[str, Value]) -> list[str]:
    """The features at fault: more than MAX_FEATURES; then each manifest feature missing, of
    the wrong kind, not finite, out of range or not a category, in manifest order; then the
    unknown names, sorted."""
    if len(features) > MAX_FEATURES:
        return ["features"]
    fields = []
    for f in manifest.features:
        value = features.get(f.name, _ABSENT)
        if value is None or value is _ABSENT:
            if f.required:
                fields.append(f"features.{f.name}")
            continue
        if isinstance(f, NumberFeature):
            ok = type(value) is float and f.min <= value <= f.max
        elif isinstance(f, CategoryFeature):
            ok = type(value) is str and value in f.categories
        else:
            ok = type(value) is bool
        if not ok:
            fields.append(f"features.{f.name}")
    known = {f.name for f in manifest.features}
    fields.extend(_feature_path(k) for k in sorted(k for k in features if k not in known))
    return fields


def _values(features: Mapping[str, pb.FeatureValue]) -> dict[str, Value]:
    out: dict[str, Value] = {}
    for name, value in features.items():
        kind = value.WhichOneof("kind")
        out[name] = getattr(value, kind) if kind is not None else None
    return out


class Oracle:
    """What a body must get, from the documented rules and the decision points' manifests."""

    def __init__(self, points: Mapping[str, Point]) -> None:
        self.points = points

    def expect(self, method: str, body: bytes) -> Expected:
        if len(body) > GRPC_MAX_RECEIVE_BYTES:
            return Expected(grpc.StatusCode.RESOURCE_EXHAUSTED)
        limit = MAX_SCORE_BYTES if method == SCORE else MAX_SCORE_BATCH_BYTES
        if len(body) > limit:
            return Expected(INVALID, (BODY,))
        try:
            if method == SCORE:
                return self._score(pb.ScoreRequest.FromString(body))
            return self._batch(pb.ScoreBatchRequest.FromString(body))
        except DecodeError:
            return Expected(INVALID, (BODY,))

    def _route(self, decision_point: str, version: str) -> Expected | Manifest:
        point = self.points.get(decision_point)
        if point is None:
            return Expected(NOT_FOUND, ("decision_point",))
        if version and version not in point.versions:
            return Expected(NOT_FOUND, ("model_version",))
        return point.versions[version or point.primary]

    def _score(self, r: pb.ScoreRequest) -> Expected:
        fields = _id_fields(
            [
                ("request_id", r.request_id, MAX_REQUEST_ID_CHARS, True),
                ("decision_point", r.decision_point, MAX_DECISION_POINT_CHARS, True),
                ("entity_key", r.entity_key, MAX_ENTITY_KEY_CHARS, True),
                ("model_version", r.model_version, MAX_MODEL_VERSION_CHARS, False),
            ]
        )
        if fields:
            return Expected(INVALID, tuple(fields))
        manifest = self._route(r.decision_point, r.model_version)
        if isinstance(manifest, Expected):
            return manifest
        fields = feature_fields(manifest, _values(r.features))
        if fields:
            return Expected(INVALID, tuple(fields))
        return Expected(OK, request_ids=(r.request_id,), pinned=r.model_version)

    def _batch(self, r: pb.ScoreBatchRequest) -> Expected:
        if r.HasField("columns"):
            if len(r.rows):
                return Expected(INVALID, ("columns",))
            rows = _column_rows(r.columns)
            if isinstance(rows, Expected):
                return rows
        elif len(r.rows) > MAX_BATCH_ROWS:
            return Expected(INVALID, ("rows",))
        else:
            rows = [(x.request_id, x.entity_key, _values(x.features)) for x in r.rows]
        fields = _id_fields(
            [
                ("decision_point", r.decision_point, MAX_DECISION_POINT_CHARS, True),
                ("model_version", r.model_version, MAX_MODEL_VERSION_CHARS, False),
            ]
        )
        if fields:
            return Expected(INVALID, tuple(fields))
        manifest = self._route(r.decision_point, r.model_version)
        if isinstance(manifest, Expected):
            return manifest
        per_row = []
        for i, (request_id, entity_key, features) in enumerate(rows):
            where = f"rows[{i}]."
            fields = _id_fields(
                [
                    ("request_id", request_id, MAX_REQUEST_ID_CHARS, True),
                    ("entity_key", entity_key, MAX_ENTITY_KEY_CHARS, True),
                ],
                where,
            ) or [where + f for f in feature_fields(manifest, features)]
            per_row.append(tuple(fields))
        return Expected(
            OK, rows=tuple(per_row), request_ids=tuple(r[0] for r in rows), pinned=r.model_version
        )


def _column_rows(c: pb.BatchColumns) -> Expected | list[Row]:
    """docs/api.md, "What each form checks": the shape, for the whole call."""
    n = len(c.request_ids)
    if n > MAX_BATCH_ROWS:
        return Expected(INVALID, ("columns.request_ids",))
    if len(c.features) > MAX_FEATURES:
        return Expected(INVALID, ("columns.features",))
    fields = []
    if len(c.entity_keys) != n:
        fields.append("columns.entity_keys")
    seen: set[str] = set()
    columns: list[tuple[str, list[Value]]] = []
    for k, column in enumerate(c.features):
        where = f"columns.features[{k}]"
        if column.name in seen:
            fields.append(f"{where}.name")
            continue
        seen.add(column.name)
        kind = column.WhichOneof("values")
        if kind is None:
            fields.append(where)
            continue
        values: list[Value] = list(getattr(column, kind).values)
        if len(values) != n:
            fields.append(f"{where}.{kind}")
            continue
        if any(i >= n for i in column.missing_rows):
            fields.append(f"{where}.missing_rows")
            continue
        for i in column.missing_rows:
            values[i] = None
        columns.append((column.name, values))
    if fields:
        return Expected(INVALID, tuple(fields))
    return [
        (c.request_ids[i], c.entity_keys[i], {name: values[i] for name, values in columns})
        for i in range(n)
    ]


# --- The wire, by hand ----------------------------------------------------------------------


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        if not n:
            out.append(low)
            return bytes(out)
        out.append(low | 0x80)


def tag(number: int, wire_type: int) -> bytes:
    return varint(number << 3 | wire_type)


def delimited(number: int, payload: bytes) -> bytes:
    return tag(number, 2) + varint(len(payload)) + payload


def read_fields(data: bytes) -> list[tuple[int, int, bytes]] | None:
    """(number, wire type, encoded value) of each field at this level; None if it does not
    read as plain fields (groups and bad wire types are left to the real parser)."""
    fields, pos = [], 0
    try:
        while pos < len(data):
            key, pos = _read_varint(data, pos)
            number, wire_type = key >> 3, key & 7
            start = pos
            if wire_type == 0:
                _, pos = _read_varint(data, pos)
            elif wire_type == 1:
                pos += 8
            elif wire_type == 5:
                pos += 4
            elif wire_type == 2:
                size, pos = _read_varint(data, pos)
                pos += size
            else:
                return None
            if pos > len(data) or number == 0:
                return None
            fields.append((number, wire_type, data[start:pos]))
    except IndexError:
        return None
    return fields


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result, shift = 0, 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise IndexError("varint too long")


def _payload(wire_type: int, encoded: bytes) -> bytes:
    """A length-delimited field's bytes without their length."""
    if wire_type != 2:
        return b""
    _, start = _read_varint(encoded, 0)
    return encoded[start:]


# --- Strings --------------------------------------------------------------------------------

CONTROL = [chr(c) for c in range(0x20)] + ["\x7f"]
UNICODE = [
    "é", "ß", "Ω", "Ж", "中", "文", "ह", "😀", "🏦", "👩‍💻", "\u0301", "\u200b", "\u200f",
    "\u202e", "\u2028", "\ufeff", "\ufffd", "\uffff", "\ufffe", "\x85", "\x9f", "\xa0", " ",
    "%", "'", '"', "\\", "/", ";", ".", "[", "]",
]  # fmt: skip
ASCII = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_:"
INVALID_UTF8 = [
    b"\xff", b"\xfe", b"\xc0\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80", b"\xe2\x82",
    b"\xf0\x9f\x98", b"\xc3",
]  # fmt: skip


def text(rng: Random, n: int, unicode: float = 0.0, control: float = 0.0) -> str:
    """``n`` characters (code points: what the limits count), a share of them from UNICODE or
    CONTROL."""
    out = []
    for _ in range(n):
        roll = rng.random()
        if roll < control:
            out.append(rng.choice(CONTROL))
        elif roll < control + unicode:
            out.append(rng.choice(UNICODE))
        else:
            out.append(rng.choice(ASCII))
    return "".join(out)[:n]


def odd_string(rng: Random, limit: int) -> str:
    """An id or key that may be valid (unicode, at the limit) or not (empty, too long, control
    characters): the oracle decides."""
    roll = rng.random()
    if roll < 0.15:
        return ""
    if roll < 0.3:
        return text(rng, rng.choice([limit + 1, limit + rng.randint(2, 3 * limit)]), 0.3)
    if roll < 0.5:
        s = text(rng, rng.randint(1, limit), 0.3)
        i = rng.randrange(len(s) + 1)
        return s[:i] + rng.choice(CONTROL) + s[i:]
    if roll < 0.65:
        return text(rng, limit, 0.5)  # exactly at the limit: valid
    if roll < 0.75:
        return rng.choice([" ", "  ", "\u200b", "\ufeff", "-", "😀" * rng.randint(1, limit)])
    return text(rng, rng.randint(1, limit), 0.6)


# --- Cases ----------------------------------------------------------------------------------


# Weights of the kinds of malformed call (the rare ones are large: oversized bodies and batches).
WEIGHTS: dict[str, float] = {
    "raw.random_bytes": 6,
    "raw.truncated": 6,
    "raw.bit_flipped": 10,
    "raw.bytes_spliced": 5,
    "raw.invalid_utf8": 7,
    "raw.wrong_wire_type": 7,
    "raw.huge_varint": 4,
    "raw.concatenated": 3,
    "raw.duplicate_map_key": 3,
    "score.bad_values": 14,
    "score.bad_ids": 8,
    "score.bad_route": 5,
    "batch.rows_bad_values": 7,
    "batch.columns_bad_values": 5,
    "batch.columns_bad_shape": 6,
    "batch.bad_call": 4,
}
HEAVY_CALLS = 4
"""batch.heavy cases, spread evenly through the run: the most work one call may ask for."""


@dataclass(frozen=True)
class Case:
    index: int
    kind: str
    method: str
    body: bytes
    valid: bool = False
    """An interleaved valid call: must be answered OK, every row decided."""


@dataclass
class Fuzzer:
    """Builds the cases from one seeded ``Random``; ``samples`` holds realistic feature dicts
    per decision point, ``points`` the routing the oracle knows."""

    rng: Random
    points: Mapping[str, Point]
    samples: Mapping[str, Sequence[Mapping[str, Value]]]
    kinds: dict[str, Callable[[int], Case]] = field(init=False)

    def __post_init__(self) -> None:
        self.kinds = {
            "raw.random_bytes": self.random_bytes,
            "raw.truncated": self.truncated,
            "raw.bit_flipped": self.bit_flipped,
            "raw.bytes_spliced": self.bytes_spliced,
            "raw.invalid_utf8": self.invalid_utf8,
            "raw.wrong_wire_type": self.wrong_wire_type,
            "raw.huge_varint": self.huge_varint,
            "raw.concatenated": self.concatenated,
            "raw.duplicate_map_key": self.duplicate_map_key,
            "score.bad_values": self.score_bad_values,
            "score.bad_ids": self.score_bad_ids,
            "score.bad_route": self.score_bad_route,
            "batch.rows_bad_values": self.batch_rows_bad,
            "batch.columns_bad_values": self.batch_columns_bad,
            "batch.columns_bad_shape": self.batch_columns_shape,
            "batch.bad_call": self.batch_bad_call,
        }

    def plan(self, calls: int, valid_every: int = 5) -> list[Case]:
        names = list(WEIGHTS)
        weights = [WEIGHTS[n] for n in names]
        cases = []
        for i in range(calls):
            if i % valid_every == 0:
                cases.append(self.valid(i))
            else:
                cases.append(self.kinds[self.rng.choices(names, weights)[0]](i))
        for k in range(HEAVY_CALLS):
            i = calls * (k + 1) // (HEAVY_CALLS + 1)
            i += i % valid_every == 0  # never in a valid call's place
            cases[i] = self.batch_heavy(i, columns=k % 2 == 1)
        # One body over gRPC's own receive bound, which gRPC refuses (RESOURCE_EXHAUSTED).
        i = self.rng.randrange(calls)
        while i % valid_every == 0 or cases[i].kind == "batch.heavy":
            i = (i + 1) % calls
        method = self.rng.choice([SCORE, SCORE_BATCH])
        body = self.rng.randbytes(GRPC_MAX_RECEIVE_BYTES + 1)
        cases[i] = Case(i, "raw.over_grpc_limit", method, body)
        return cases

    # -- valid requests, the base of every mutation

    def point(self) -> str:
        return self.rng.choice(sorted(self.points))

    def features(self, point: str) -> dict[str, Value]:
        return dict(self.rng.choice(self.samples[point]))

    def request_id(self, i: int) -> str:
        roll = self.rng.random()
        if roll < 0.8:
            return f"fz-{i}-{self.rng.getrandbits(32):08x}"
        return text(self.rng, self.rng.randint(1, MAX_REQUEST_ID_CHARS), 0.5)  # valid, unicode

    def entity_key(self) -> str:
        if self.rng.random() < 0.8:
            return f"cust-{self.rng.randrange(10_000)}"
        return text(self.rng, self.rng.randint(1, MAX_ENTITY_KEY_CHARS), 0.5)

    def version(self, point: str) -> str:
        if self.rng.random() < 0.85:
            return ""
        return self.rng.choice(sorted(self.points[point].versions))

    def rows(self, i: int, point: str, n: int) -> list[Row]:
        ids = [f"{self.request_id(i)[: MAX_REQUEST_ID_CHARS - 5]}-{k}" for k in range(n)]
        return [(request_id, self.entity_key(), self.features(point)) for request_id in ids]

    def score_message(self, i: int) -> pb.ScoreRequest:
        point = self.point()
        return score_message(
            self.request_id(i), point, self.entity_key(), self.features(point), self.version(point)
        )

    def batch_message(self, i: int, n: int | None = None, columns: bool | None = None) -> Any:
        point = self.point()
        rows = self.rows(i, point, self.rng.randint(1, 12) if n is None else n)
        if columns is None:
            columns = self.rng.random() < 0.5
        build = columns_message if columns else rows_message
        return build(point, rows, self.version(point))

    def valid(self, i: int) -> Case:
        if self.rng.random() < 0.7:
            return Case(i, "valid.score", SCORE, self.score_message(i).SerializeToString(), True)
        columns = self.rng.random() < 0.5
        message = self.batch_message(i, self.rng.randint(1, 20), columns)
        kind = "valid.batch_columns" if columns else "valid.batch_rows"
        return Case(i, kind, SCORE_BATCH, message.SerializeToString(), True)

    def any_message(self, i: int) -> tuple[str, bytes]:
        if self.rng.random() < 0.55:
            return SCORE, self.score_message(i).SerializeToString()
        return SCORE_BATCH, self.batch_message(i).SerializeToString()

    # -- (a) raw malformed bodies

    def random_bytes(self, i: int) -> Case:
        method = self.rng.choice([SCORE, SCORE_BATCH])
        roll = self.rng.random()
        if roll < 0.01:
            size = (MAX_SCORE_BYTES if method == SCORE else MAX_SCORE_BATCH_BYTES) + 1
            size += self.rng.randrange(4096)
        else:
            size = self.rng.randint(0, 400)
        return Case(i, "raw.random_bytes", method, self.rng.randbytes(size))

    def truncated(self, i: int) -> Case:
        method, body = self.any_message(i)
        return Case(i, "raw.truncated", method, body[: self.rng.randrange(max(1, len(body)))])

    def bit_flipped(self, i: int) -> Case:
        method, body = self.any_message(i)
        data = bytearray(body)
        for _ in range(self.rng.randint(1, 4)):
            if data:
                data[self.rng.randrange(len(data))] ^= 1 << self.rng.randrange(8)
        return Case(i, "raw.bit_flipped", method, bytes(data))

    def bytes_spliced(self, i: int) -> Case:
        method, body = self.any_message(i)
        data = bytearray(body)
        for _ in range(self.rng.randint(1, 3)):
            at = self.rng.randrange(len(data) + 1)
            roll = self.rng.random()
            if roll < 0.4:
                data[at:at] = self.rng.randbytes(self.rng.randint(1, 8))
            elif roll < 0.7:
                del data[at : at + self.rng.randint(1, 8)]
            else:
                data[at : at + 1] = bytes([self.rng.choice([0x00, 0x7F, 0x80, 0xFF])])
        return Case(i, "raw.bytes_spliced", method, bytes(data))

    def invalid_utf8(self, i: int) -> Case:
        """A string field (an id, a map key, a category, a column's name or value) whose bytes
        are not UTF-8: set to a marker, then the marker's bytes replaced."""
        marker = "\ue000MARK\ue000"
        size = len(marker.encode())
        bad = self.rng.choice(INVALID_UTF8)
        at = self.rng.randrange(size - len(bad) + 1)
        raw = (b"x" * at + bad).ljust(size, b"y")
        point = self.point()
        rows = self.rows(i, point, self.rng.randint(1, 4))
        where = self.rng.choice(
            ["request_id", "decision_point", "entity_key", "model_version", "feature_name",
             "category", "row_id", "column_name", "column_id", "column_category"]
        )  # fmt: skip
        category = next(f.name for f in self._manifest(point).features if _is_category(f))
        if where in ("row_id", "column_name", "column_id", "column_category"):
            if where == "row_id":
                rows[0] = (marker, *rows[0][1:])
                message: Any = rows_message(point, rows)
            else:
                message = columns_message(point, rows)
                c = message.columns
                if where == "column_name":
                    c.features[0].name = marker
                elif where == "column_id":
                    c.request_ids[0] = marker
                else:
                    column = next(col for col in c.features if col.name == category)
                    column.strings.values[0] = marker
            method = SCORE_BATCH
        else:
            features = self.features(point)
            values = {"request_id": self.request_id(i), "entity_key": self.entity_key()}
            values |= {"decision_point": point, "model_version": ""}
            if where == "feature_name":
                features[marker] = 1.0
            elif where == "category":
                features[category] = marker
            else:
                values[where] = marker
            message = score_message(
                values["request_id"], values["decision_point"], values["entity_key"], features,
                values["model_version"],
            )  # fmt: skip
            method = SCORE
        body = message.SerializeToString()
        assert marker.encode() in body
        return Case(i, "raw.invalid_utf8", method, body.replace(marker.encode(), raw, 1))

    def wrong_wire_type(self, i: int) -> Case:
        """One field, at the top or inside a map entry, feature value or column, re-encoded
        with another wire type (varint, fixed64, fixed32, length-delimited, a group, 6 or 7)."""
        method, body = self.any_message(i)
        return Case(i, "raw.wrong_wire_type", method, self._rewire(body, depth=0))

    def _rewire(self, data: bytes, depth: int) -> bytes:
        fields = read_fields(data)
        if not fields:
            return data + tag(self.rng.randint(1, 6), self.rng.choice([0, 1, 2, 3, 5, 6, 7]))
        k = self.rng.randrange(len(fields))
        number, wire_type, encoded = fields[k]
        if wire_type == 2 and depth < 3 and self.rng.random() < 0.5:
            inner = _payload(wire_type, encoded)
            if read_fields(inner):
                out = tag(number, 2) + _length_and(self._rewire(inner, depth + 1))
                return _join(fields, k, out)
        new = self.rng.choice([t for t in (0, 1, 2, 3, 5, 6, 7) if t != wire_type])
        if new == 0:
            out = tag(number, 0) + varint(self.rng.getrandbits(self.rng.choice([1, 7, 32, 64])))
        elif new == 1:
            out = tag(number, 1) + self.rng.randbytes(8)
        elif new == 5:
            out = tag(number, 5) + self.rng.randbytes(4)
        elif new == 2:
            out = delimited(number, self.rng.randbytes(self.rng.randint(0, 12)))
        elif new == 3:
            out = tag(number, 3) + tag(number, 4)  # an empty group
        else:
            out = tag(number, new) + self.rng.randbytes(self.rng.randint(0, 4))
        return _join(fields, k, out)

    def huge_varint(self, i: int) -> Case:
        method, body = self.any_message(i)
        roll = self.rng.random()
        huge = b"\xff" * 9 + b"\x01"  # 2**64 - 1, the largest there is
        if roll < 0.2:
            extra = tag(self.rng.randint(1, 5), 2) + huge  # a length no body has
        elif roll < 0.4:
            extra = tag(self.rng.randint(1, 5), 0) + b"\xff" * 10 + b"\x01"  # 11 bytes
        elif roll < 0.55:
            extra = varint((1 << 29) << 3) + b"\x00"  # field number past 2**29 - 1
        elif roll < 0.65:
            extra = b"\x00\x01"  # field number 0
        elif roll < 0.8:
            extra = tag(self.rng.randint(6, 2000), 0) + huge  # an unknown field: kept, ignored
        else:
            # missing_rows (uint32) with a 64-bit value: truncated by the parser, out of range
            point = self.point()
            message = columns_message(point, self.rows(i, point, self.rng.randint(1, 5)))
            column = message.columns.features[0].SerializeToString() + tag(5, 0) + huge
            columns = b"".join(
                delimited(3, column if k == 0 else c.SerializeToString())
                for k, c in enumerate(message.columns.features)
            )
            ids = b"".join(delimited(1, r.encode()) for r in message.columns.request_ids)
            keys = b"".join(delimited(2, e.encode()) for e in message.columns.entity_keys)
            body = delimited(1, point.encode()) + delimited(4, ids + keys + columns)
            return Case(i, "raw.huge_varint", SCORE_BATCH, body)
        at = self.rng.choice([0, len(body)])
        return Case(i, "raw.huge_varint", method, body[:at] + extra + body[at:])

    def concatenated(self, i: int) -> Case:
        """Two messages back to back: one message on the wire (later fields win, maps merge)."""
        method, first = self.any_message(i)
        if method == SCORE:
            second = self.score_message(i)
            if self.rng.random() < 0.5:
                self._break_features(second.features, self.point_of(second.decision_point))
            return Case(i, "raw.concatenated", method, first + second.SerializeToString())
        return Case(
            i, "raw.concatenated", method, first + self.batch_message(i).SerializeToString()
        )

    def duplicate_map_key(self, i: int) -> Case:
        """A feature sent twice in the map: the last entry counts."""
        message = self.score_message(i)
        name = self.rng.choice(sorted(message.features))
        again = pb.ScoreRequest()
        again.features[name].CopyFrom(message.features[name])
        if self.rng.random() < 0.6:
            again.features[name].CopyFrom(feature_value(self.bad_value()))
        first, second = message.SerializeToString(), again.SerializeToString()
        body = second + first if self.rng.random() < 0.5 else first + second
        return Case(i, "raw.duplicate_map_key", SCORE, body)

    # -- (b) well-formed protobuf, bad values

    def point_of(self, name: str) -> str:
        return name if name in self.points else self.point()

    def _manifest(self, point: str) -> Manifest:
        p = self.points[point]
        return p.versions[p.primary]

    def bad_value(self) -> float | str | bool:
        values: list[float | str | bool] = [
            math.nan, -math.nan, math.inf, -math.inf, 1e308, -1e-300, -0.0, 5e-324, -1.0, 1e6,
            "", "x" * self.rng.randint(1, 300), text(self.rng, 20, 0.5, 0.2), "NaN", "1.0",
            True, False, "grocery", "Grocery", "pos\x00", "😀", "z" * (MAX_STRING_VALUE_CHARS + 1),
            "é" * self.rng.randint(MAX_STRING_VALUE_CHARS + 1, 5000),
        ]  # fmt: skip
        return self.rng.choice(values)

    def bad_name(self) -> str:
        return self.rng.choice(
            [
                "", " ", "amount ", "AMOUNT", "features.amount", "rows[0]", "x" * 65,
                "y" * self.rng.randint(66, 5000), text(self.rng, 12, 0.5),
                text(self.rng, 8, 0, 0.5),
                "😀" * self.rng.randint(1, 64), "é" * 64, "\x00", f"extra_{self.rng.randrange(99)}",
                "\u200b", "\xa0amount", "%" * self.rng.randint(1, 64), "%41",
                "".join(self.rng.choice("😀🏦中Жé%") for _ in range(64)),  # the longest to send
            ]
        )  # fmt: skip

    def _break_features(self, features: Any, point: str) -> None:
        """1-3 changes to a protobuf feature map: removed, unset, a bad value, an unknown name,
        or hundreds of features."""
        manifest = self._manifest(point)
        names = [f.name for f in manifest.features]
        for _ in range(self.rng.randint(1, 3)):
            roll = self.rng.random()
            name = self.rng.choice(names)
            if roll < 0.15:
                features.pop(name, None)
            elif roll < 0.25:
                features[name].Clear()  # no kind set: missing
            elif roll < 0.7:
                features[name].CopyFrom(feature_value(self.bad_value()))
            elif roll < 0.9:
                features[self.bad_name()].CopyFrom(feature_value(self.bad_value()))
            elif roll < 0.95:  # a few dozen unknown names: more than the refusal shows
                for _ in range(self.rng.randint(5, 40)):
                    features[self.bad_name()].CopyFrom(feature_value(self.bad_value()))
            elif roll < 0.97:  # the largest refusal: every name shown 64 four-byte characters
                for _ in range(self.rng.randint(8, 20)):
                    name = "".join(self.rng.choice("😀🏦🚀🧾") for _ in range(64))
                    features[name].number_value = 1.0
            else:
                for k in range(MAX_FEATURES + self.rng.randint(-2, 300)):
                    features[f"f{k:04d}"].number_value = 1.0

    def score_bad_values(self, i: int) -> Case:
        message = self.score_message(i)
        self._break_features(message.features, message.decision_point)
        return Case(i, "score.bad_values", SCORE, message.SerializeToString())

    def score_bad_ids(self, i: int) -> Case:
        message = self.score_message(i)
        for _ in range(self.rng.randint(1, 2)):
            which = self.rng.choice(["request_id", "entity_key", "decision_point", "model_version"])
            limit = {
                "request_id": MAX_REQUEST_ID_CHARS,
                "entity_key": MAX_ENTITY_KEY_CHARS,
                "decision_point": MAX_DECISION_POINT_CHARS,
                "model_version": MAX_MODEL_VERSION_CHARS,
            }[which]
            setattr(message, which, odd_string(self.rng, limit))
        if self.rng.random() < 0.3:
            self._break_features(message.features, self.point_of(message.decision_point))
        return Case(i, "score.bad_ids", SCORE, message.SerializeToString())

    def bad_route(self, message: Any) -> None:
        point = message.decision_point
        if self.rng.random() < 0.5:
            message.decision_point = self.rng.choice(
                [point.upper(), point + " ", " " + point, point.replace("-", "_"), "fraud",
                 "card-fraud/v1", "credit-risk\u200b", "é", "*", "card-fraud;credit-risk"]
            )  # fmt: skip
        else:
            message.model_version = self.rng.choice(
                ["0", "3", "99", "champion", "challenger", "v1", "1.0", " 1", "01", "-1", "latest"]
            )

    def score_bad_route(self, i: int) -> Case:
        message = self.score_message(i)
        self.bad_route(message)
        return Case(i, "score.bad_route", SCORE, message.SerializeToString())

    def batch_rows_bad(self, i: int) -> Case:
        message = self.batch_message(i, self.rng.randint(1, 15), columns=False)
        for _ in range(self.rng.randint(1, 3)):
            row = self.rng.choice(message.rows)
            roll = self.rng.random()
            if roll < 0.6:
                self._break_features(row.features, message.decision_point)
            elif roll < 0.8:
                row.request_id = odd_string(self.rng, MAX_REQUEST_ID_CHARS)
            else:
                row.entity_key = odd_string(self.rng, MAX_ENTITY_KEY_CHARS)
        return Case(i, "batch.rows_bad_values", SCORE_BATCH, message.SerializeToString())

    def batch_columns_bad(self, i: int) -> Case:
        """Right shape, bad values: NaN in a numbers column, a category column of numbers,
        required features listed missing, bad ids."""
        message = self.batch_message(i, self.rng.randint(1, 15), columns=True)
        c = message.columns
        n = len(c.request_ids)
        for _ in range(self.rng.randint(1, 3)):
            roll = self.rng.random()
            column = self.rng.choice(c.features)
            if roll < 0.3 and column.HasField("numbers"):
                column.numbers.values[self.rng.randrange(n)] = self.rng.choice(
                    [math.nan, math.inf, -math.inf, -1.0, 1e300]
                )
            elif roll < 0.5:
                kind = self.rng.choice(["numbers", "strings", "bools"])
                values = {"numbers": [1.0] * n, "strings": ["pos"] * n, "bools": [True] * n}
                getattr(column, kind).values.extend(values[kind])  # sets the oneof
            elif roll < 0.65:
                column.missing_rows.append(self.rng.randrange(n))
            elif roll < 0.75:
                column.name = self.bad_name()
            elif roll < 0.87:
                c.request_ids[self.rng.randrange(n)] = odd_string(self.rng, MAX_REQUEST_ID_CHARS)
            else:
                c.entity_keys[self.rng.randrange(n)] = odd_string(self.rng, MAX_ENTITY_KEY_CHARS)
        return Case(i, "batch.columns_bad_values", SCORE_BATCH, message.SerializeToString())

    def batch_columns_shape(self, i: int) -> Case:
        """A bad shape for the whole call: lengths, duplicate names, no values, indexes out of
        range, more than MAX_BATCH_ROWS."""
        big = self.rng.random() < 0.03
        n = MAX_BATCH_ROWS + self.rng.randint(1, 50) if big else self.rng.randint(1, 12)
        message = self.batch_message(i, n, columns=True)
        c = message.columns
        if not big:
            roll = self.rng.random()
            column = self.rng.choice(c.features)
            if roll < 0.25:
                kind = column.WhichOneof("values")
                values = getattr(column, kind).values
                if self.rng.random() < 0.5 or len(values) == 0:
                    values.append(values[0] if values else 0.0)
                else:
                    del values[-1]
            elif roll < 0.4:
                if self.rng.random() < 0.5:
                    c.entity_keys.append("extra")
                else:
                    del c.entity_keys[-1]
            elif roll < 0.55:
                c.features.add().CopyFrom(column)
            elif roll < 0.7:
                column.ClearField(column.WhichOneof("values"))
            elif roll < 0.85:
                column.missing_rows.append(n + self.rng.choice([0, 1, 1000, 2**32 - 1 - n]))
            else:
                c.request_ids.append("one-more")  # every column is now one short
        return Case(i, "batch.columns_bad_shape", SCORE_BATCH, message.SerializeToString())

    def batch_bad_call(self, i: int) -> Case:
        """Bad for every row: both forms, too many rows, the call's own fields, the route."""
        roll = self.rng.random()
        if roll < 0.05:
            message = self.batch_message(i, MAX_BATCH_ROWS + self.rng.randint(1, 20), False)
        elif roll < 0.2:
            message = self.batch_message(i, self.rng.randint(1, 5), columns=True)
            message.rows.add(request_id="r", entity_key="c")
        elif roll < 0.6:
            message = self.batch_message(i)
            which = self.rng.choice(["decision_point", "model_version"])
            limit = (
                MAX_DECISION_POINT_CHARS if which == "decision_point" else MAX_MODEL_VERSION_CHARS
            )
            setattr(message, which, odd_string(self.rng, limit))
        else:
            message = self.batch_message(i)
            self.bad_route(message)
        return Case(i, "batch.bad_call", SCORE_BATCH, message.SerializeToString())

    def batch_heavy(self, i: int, columns: bool) -> Case:
        """About as much work as the limits allow in one call: MAX_BATCH_ROWS rows, each with
        130 unknown features (rows form: ~2.7 MB), or MAX_FEATURES columns (columns form:
        ~0.4 MB, every row refused), or one more (the call refused before any column is read)."""
        point = self.point()
        if not columns:
            features = self.features(point) | {f"u{k}": 1.0 for k in range(130)}
            (request_id, entity_key, _), *_ = self.rows(i, point, 1)
            row = rows_message(point, [(request_id, entity_key, features)]).rows[0]
            body = delimited(1, point.encode()) + delimited(3, row.SerializeToString()) * (
                MAX_BATCH_ROWS
            )
            return Case(i, "batch.heavy", SCORE_BATCH, body)
        rows = self.rows(i, point, MAX_BATCH_ROWS)
        message = columns_message(point, rows)
        for k in range(MAX_FEATURES - len(message.columns.features) + self.rng.randint(0, 1)):
            message.columns.features.add(name=f"u{k}").bools.values.extend([True] * len(rows))
        return Case(i, "batch.heavy", SCORE_BATCH, message.SerializeToString())


def _is_category(f: object) -> bool:
    return isinstance(f, CategoryFeature)


def _length_and(payload: bytes) -> bytes:
    return varint(len(payload)) + payload


def _join(fields: list[tuple[int, int, bytes]], k: int, replacement: bytes) -> bytes:
    out = []
    for j, (number, wire_type, encoded) in enumerate(fields):
        out.append(replacement if j == k else tag(number, wire_type) + encoded)
    return b"".join(out)


def _value(value: Value) -> pb.FeatureValue:
    return pb.FeatureValue() if value is None else feature_value(value)


def score_message(
    request_id: str, point: str, entity_key: str, features: Mapping[str, Value], version: str = ""
) -> pb.ScoreRequest:
    message = pb.ScoreRequest(
        request_id=request_id, decision_point=point, entity_key=entity_key, model_version=version
    )
    for name, value in features.items():
        message.features[name].CopyFrom(_value(value))
    return message


def rows_message(point: str, rows: Sequence[Row], version: str = "") -> pb.ScoreBatchRequest:
    message = pb.ScoreBatchRequest(decision_point=point, model_version=version)
    for request_id, entity_key, features in rows:
        row = message.rows.add(request_id=request_id, entity_key=entity_key)
        for name, value in features.items():
            row.features[name].CopyFrom(_value(value))
    return message


def columns_message(point: str, rows: Sequence[Row], version: str = "") -> pb.ScoreBatchRequest:
    """The columnar form of valid rows (every feature of one kind in every row)."""
    message = pb.ScoreBatchRequest(decision_point=point, model_version=version)
    c = message.columns
    c.request_ids.extend(r[0] for r in rows)
    c.entity_keys.extend(r[1] for r in rows)
    for name, first in rows[0][2].items():
        column = c.features.add(name=name)
        kind = "bools" if type(first) is bool else "strings" if type(first) is str else "numbers"
        getattr(column, kind).values.extend(r[2][name] for r in rows)
    return message
