"""Decision ids are UUIDv7: valid, and sorting them sorts decisions by time."""

from __future__ import annotations

import time
import uuid

from gateway.decisions.ids import UuidV7Generator, uuid7_unix_ms


def test_ids_are_rfc9562_version_7_with_the_time_inside() -> None:
    now = time.time_ns()
    value = UuidV7Generator().new(now)
    parsed = uuid.UUID(value)
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122
    assert str(parsed) == value
    assert uuid7_unix_ms(value) == now // 1_000_000


def test_ids_sort_by_time_even_within_one_millisecond() -> None:
    ids = UuidV7Generator()
    start = time.time_ns()
    # 5,000 ids in the same millisecond overflow the 12-bit counter: order must still hold.
    same_ms = [ids.new(start) for _ in range(5_000)]
    later = [ids.new(start + k * 1_000_000) for k in range(1, 50)]
    made = same_ms + later
    assert sorted(made) == made
    assert len(set(made)) == len(made)


def test_two_generators_order_by_millisecond() -> None:
    a, b = UuidV7Generator(), UuidV7Generator()
    now = time.time_ns()
    assert a.new(now) < b.new(now + 1_000_000) < a.new(now + 2_000_000)


def test_ids_made_together_keep_the_order_and_the_format() -> None:
    ids = UuidV7Generator()
    start = time.time_ns()
    # One id alone, a batch that overflows the millisecond's counter, then one alone again.
    made = [ids.new(start), *ids.new_many(start, 5_000), ids.new(start)]
    assert sorted(made) == made
    assert len(set(made)) == len(made)
    for value in made[1:-1:499]:
        parsed = uuid.UUID(value)
        assert (parsed.version, parsed.variant, str(parsed)) == (7, uuid.RFC_4122, value)
    assert uuid7_unix_ms(made[1]) == start // 1_000_000
    assert ids.new_many(start, 0) == []
