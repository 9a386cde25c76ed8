"""Tests of rlgumbel.schedules: endpoints, monotonicity, clamping, bounds and validation."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rlgumbel.schedules import ConstantSchedule, CosineSchedule, ExponentialSchedule, LinearSchedule, Schedule

DURATION = 1000


def make(kind: str, start: float, end: float, horizon: int = DURATION) -> Schedule:
    """A schedule of `kind` from `start` to `end`; the exponential one reaches `end` near `horizon`."""
    if kind == "linear":
        return LinearSchedule(start=start, end=end, duration=horizon)
    if kind == "cosine":
        return CosineSchedule(start=start, end=end, duration=horizon)
    if kind == "exponential":
        rate = (math.log(start) - math.log(end)) / horizon if end > 0 else 5.0 / horizon
        return ExponentialSchedule(start=start, end=end, rate=rate)
    raise ValueError(kind)


ANNEALING = ["linear", "cosine", "exponential"]


# --------------------------------------------------------------------------------------------
# Values


def test_constant_is_start_everywhere():
    schedule = ConstantSchedule(start=0.7)
    assert [schedule(step) for step in (-5, 0, 1, 10**9)] == [0.7] * 4
    assert schedule.bounds() == (0.7, 0.7)


@pytest.mark.parametrize("kind", ANNEALING)
def test_starts_at_start_and_ends_at_end(kind):
    schedule = make(kind, start=2.0, end=0.5)
    assert schedule(0) == pytest.approx(2.0, rel=1e-12)
    assert schedule(DURATION) == pytest.approx(0.5, rel=1e-9)


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_midpoint(kind):
    # both are symmetric about the middle of the duration
    assert make(kind, start=3.0, end=1.0)(DURATION // 2) == pytest.approx(2.0, rel=1e-12)


def test_linear_is_a_straight_line():
    schedule = LinearSchedule(start=1.0, end=0.0, duration=400)
    for step in (0, 1, 100, 399):
        assert schedule(step) == pytest.approx(1.0 - step / 400, abs=1e-15)


def test_cosine_follows_half_a_cosine():
    schedule = CosineSchedule(start=1.0, end=0.0, duration=400)
    for step in (0, 1, 100, 300, 399):
        assert schedule(step) == pytest.approx(0.5 * (1 + math.cos(math.pi * step / 400)), abs=1e-15)


def test_exponential_decays_at_its_rate_then_stays_at_end():
    schedule = ExponentialSchedule(start=1.0, end=0.1, rate=1e-3)
    for step in (0, 1, 500, 2000):
        assert schedule(step) == pytest.approx(math.exp(-1e-3 * step), rel=1e-12)
    crossing = math.log(10) / 1e-3  # start·exp(−rate·step) = end at step ≈ 2302.6
    assert schedule(int(crossing) + 1) == 0.1
    assert schedule(10**9) == 0.1 and schedule(10**12) == 0.1


def test_exponential_with_zero_rate_is_constant():
    schedule = ExponentialSchedule(start=0.8, end=0.2, rate=0.0)
    assert schedule(0) == schedule(10**6) == 0.8


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_clamped_past_duration(kind):
    schedule = make(kind, start=1.0, end=0.25)
    at_end = schedule(DURATION)
    assert at_end == pytest.approx(0.25, rel=1e-12)
    assert all(schedule(step) == at_end for step in (DURATION + 1, 2 * DURATION, 10**12))


@pytest.mark.parametrize("kind", ANNEALING)
def test_negative_steps_are_clamped_to_start(kind):
    schedule = make(kind, start=1.0, end=0.25)
    assert schedule(-1) == schedule(-(10**6)) == schedule(0)


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_increasing_schedules_are_allowed(kind):
    schedule = make(kind, start=0.1, end=0.9)
    values = [schedule(step) for step in range(0, DURATION + 50, 7)]
    assert values == sorted(values) and values[-1] == pytest.approx(0.9)
    assert schedule.bounds() == (0.1, 0.9)


@pytest.mark.parametrize("kind", ANNEALING)
def test_decreasing_schedules_are_monotone(kind):
    schedule = make(kind, start=5.0, end=0.05)
    values = [schedule(step) for step in range(-10, 2 * DURATION, 3)]
    assert values == sorted(values, reverse=True)
    assert values[0] > values[-1]


@pytest.mark.parametrize("kind", ANNEALING)
def test_bounds_are_end_and_start(kind):
    schedule = make(kind, start=2.0, end=0.5)
    assert schedule.bounds() == (0.5, 2.0)
    low, high = schedule.bounds()
    assert all(low * (1 - 1e-12) <= schedule(step) <= high for step in range(0, 3 * DURATION, 11))


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    kind=st.sampled_from(ANNEALING),
    endpoints=st.tuples(st.floats(0.0, 100.0), st.floats(0.0, 100.0)),
    horizon=st.integers(1, 10**7),
    steps=st.lists(st.integers(-10, 10**8), min_size=2, max_size=20),
)
def test_property_monotone_and_within_bounds(kind, endpoints, horizon, steps):
    start, end = endpoints
    if kind == "exponential":
        start, end = max(endpoints), min(endpoints)
        if start == 0.0:
            return
    schedule = make(kind, start, end, horizon)
    low, high = schedule.bounds()
    values = [schedule(step) for step in sorted(steps)]
    # within bounds up to one rounding of the last operation (endpoints are exact, see below)
    slack = 4 * math.ulp(max(high, 1e-300))
    assert all(low - slack <= value <= high + slack for value in values)
    pairs = list(itertools.pairwise(values))
    if start >= end:
        assert all(a >= b for a, b in pairs)
    else:
        assert all(a <= b for a, b in pairs)


def test_linear_is_exactly_end_past_duration():
    schedule = LinearSchedule(start=1.0, end=0.1, duration=10)
    assert schedule(10) == 0.1 and schedule(11) == 0.1


def test_cosine_is_exactly_start_at_step_zero():
    assert CosineSchedule(start=0.1, end=1.0, duration=10)(0) == 0.1


def test_values_are_floats():
    assert isinstance(LinearSchedule(start=1, end=0, duration=4)(2), float)
    assert isinstance(ConstantSchedule(start=1)(0), float)
