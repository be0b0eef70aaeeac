"""Several rounds per path: figures are the rounds' medians, each ratio is taken within a round
and the verdict is the median round's, so drift between rounds moves no ratio."""

from __future__ import annotations

import pytest

from loadtests.bench.cli import build_parser, per_round
from loadtests.bench.report import Row, Target, combine_rounds, median_row, table, targets


def _row(key: str, throughput: float, p50_us: float = 2_000.0, p99_us: float = 4_000.0) -> Row:
    return Row(
        key, key, True, p50_us=p50_us, p99_us=p99_us, throughput=throughput,
        saturation_p99_us=50_000.0, concurrency=32, cpu_us_per_decision=1_000.0,
    )  # fmt: skip


def test_a_figure_is_the_median_of_its_rounds() -> None:
    rows = [_row("direct", 900.0), _row("direct", 1_400.0), _row("direct", 1_000.0)]
    rows[1].errors = {"UNAVAILABLE": 2}
    splits = [(400.0, 150.0), (700.0, 120.0), (500.0, 90.0)]
    for row, (gateway, runtime) in zip(rows, splits, strict=True):
        row.cpu_split = {"gateway": gateway, "runtime": runtime}
    merged = median_row(rows)
    assert merged.throughput == 1_000.0
    assert merged.errors == {"UNAVAILABLE": 2}
    # Each process's share is its own median (here from different rounds).
    assert merged.cpu_split == {"gateway": 500.0, "runtime": 120.0}
    assert "CPU us/dec by process: gateway 500.0, runtime 120.0" in table([merged])


def test_ratios_are_taken_within_rounds_when_the_machine_drifts() -> None:
    """The machine halves its speed between rounds: every path slows alike, and the gateway's
    ratio to direct is 1.1 in each round, though the median figures alone would say 0.55."""
    per_round = [
        [_row("direct", 1_000.0 * speed), _row("gateway-lineage-off", 1_100.0 * speed)]
        for speed in (1.0, 0.5, 0.25)
    ]
    found = combine_rounds([targets(rows) for rows in per_round])
    (throughput,) = [t for t in found if t.name == "gateway throughput >= 1.0 x direct"]
    assert throughput.ok is True
    assert throughput.rounds == pytest.approx((1.1, 1.1, 1.1))


def test_the_verdict_is_the_median_rounds() -> None:
    name = "lineage on >= 0.90 x lineage off"
    rounds = [[Target(name, v >= 0.9, f"{v} x", v)] for v in (0.95, 0.70, 0.91)]
    (combined,) = combine_rounds(rounds)
    assert (combined.ok, combined.value) == (True, 0.91)
    rounds = [[Target(name, v >= 0.9, f"{v} x", v)] for v in (0.95, 0.70, 0.85)]
    (combined,) = combine_rounds(rounds)
    assert (combined.ok, combined.value) == (False, 0.85)
    assert "0.95, 0.70, 0.85" in combined.detail


def test_a_round_has_its_share_of_the_phase_time() -> None:
    assert per_round((300, 3000, 6.0, 300_000, 10.0, 20_000, 4.0), 3) == (
        300, 1000, 2.0, 100_000, 10.0 / 3, 20_000, 4.0,
    )  # fmt: skip


@pytest.mark.parametrize("rounds", ["0", "2", "-1"])
def test_an_even_or_empty_round_count_is_refused(rounds: str) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--rounds", rounds])


@pytest.mark.parametrize("generators", ["0", "-2"])
def test_the_overload_needs_a_load_generator(generators: str) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--overload-generators", generators])


def test_a_lagging_store_shows_as_a_lower_end_to_end_rate() -> None:
    """20,000/s answered for 2 s while the store needed 3 s more to hold them all: 8,000/s stored.
    The table and the ScoreBatch verdict say both, so a burst the outbox absorbed is not read
    as what the store sustains."""
    batch = _row("score-batch", 20_000.0)
    batch.drain_s, batch.window_s = 3.0, 2.0
    assert batch.stored_per_s == pytest.approx(8_000.0)
    (verdict,) = [t for t in targets([batch]) if t.name.startswith("ScoreBatch")]
    assert verdict.ok is True
    assert "(8,000/s stored end to end)" in verdict.detail
    assert "stored end to end: 8,000 decisions/s" in table([batch])
    assert _row("direct", 1_000.0).stored_per_s is None


def test_one_call_in_flight_is_judged_on_both_gateways() -> None:
    rows = [
        _row("direct", 1_000.0, p50_us=1_000.0, p99_us=2_000.0),
        _row("gateway-lineage-off", 1_100.0, p50_us=1_700.0, p99_us=3_000.0),
        _row("gateway-lineage-on", 900.0, p50_us=2_500.0, p99_us=4_500.0),
    ]
    found = {t.name: t for t in targets(rows)}
    assert found["gateway p50 <= direct p50 + 0.8 ms"].ok is True
    on_p50 = found["gateway, lineage on, p50 <= direct p50 + 0.8 ms"]
    assert (on_p50.ok, on_p50.value) == (False, pytest.approx(1.5))
    on_p99 = found["gateway, lineage on, p99 <= 2 x direct p99"]
    assert (on_p99.ok, on_p99.value) == (False, pytest.approx(2.25))
