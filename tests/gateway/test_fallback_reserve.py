"""The fallback reserve follows what this gateway has been measured to need: the configured
floor while decisions are cheap, more when they are not, never most of a caller's time."""

from __future__ import annotations

import pytest

from gateway.attempts.reserve import MARGIN, WINDOW, ReserveEstimate
from gateway.deadline import Deadline


def _in(seconds: float) -> Deadline:
    """A deadline ``seconds`` from now."""
    return Deadline.after(seconds)


def test_the_configured_reserve_holds_until_costs_are_measured_above_it() -> None:
    estimate = ReserveEstimate()
    assert estimate.reserve(0.010, _in(0.050)) == 0.010
    for _ in range(WINDOW):
        estimate.observe(0.002)
    assert estimate.reserve(0.010, _in(0.050)) == 0.010


def test_slow_decisions_raise_the_reserve_to_a_margin_over_their_tail() -> None:
    estimate = ReserveEstimate()
    for i in range(WINDOW):
        estimate.observe(0.012 if i % 50 == 0 else 0.002)  # a 2 % tail at 12 ms
    assert abs(estimate.reserve(0.010, _in(1.0)) - MARGIN * 0.012) < 1e-9


def test_a_raise_never_takes_more_than_half_the_time_left_but_the_floor_stays() -> None:
    estimate = ReserveEstimate()
    for _ in range(WINDOW):
        estimate.observe(0.040)
    assert estimate.reserve(0.010, _in(0.050)) == pytest.approx(0.025, abs=1e-3)
    assert estimate.reserve(0.030, _in(0.050)) == 0.030


def test_the_estimate_forgets_a_slow_spell_once_the_window_has_turned_over() -> None:
    estimate = ReserveEstimate()
    for _ in range(WINDOW):
        estimate.observe(0.030)
    assert estimate.reserve(0.010, _in(1.0)) > 0.040
    for _ in range(WINDOW):
        estimate.observe(0.001)
    assert estimate.reserve(0.010, _in(1.0)) == 0.010
