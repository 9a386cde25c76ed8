"""Schedules: a value (temperature or ε) as a pure function of the environment step."""

from __future__ import annotations

import math


class Schedule:
    """A value over env steps. Subclasses implement `__call__(step) -> float`."""

    start: float
    end: float

    def __call__(self, step: int) -> float:
        raise NotImplementedError

    def bounds(self) -> tuple[float, float]:
        """The smallest and largest value the schedule takes (all schedules are monotone)."""
        return min(self.start, self.end), max(self.start, self.end)

    def _between(self, fraction: float, value: float) -> float:
        """`start` at fraction 0, `end` from fraction 1 on, `value` clamped into the bounds
        in between: exact endpoints and no value outside them from rounding."""
        if fraction <= 0.0:
            return self.start
        if fraction >= 1.0:
            return self.end
        low, high = self.bounds()
        return min(max(value, low), high)


class ConstantSchedule(Schedule):
    """`start` at every step."""

    def __init__(self, start: float) -> None:
        self.start = self.end = float(start)

    def __call__(self, step: int) -> float:
        return self.start


class LinearSchedule(Schedule):
    """From `start` to `end` in a straight line over `duration` steps, then `end`."""

    def __init__(self, start: float, end: float, duration: int) -> None:
        self.start = float(start)
        self.end = float(end)
        self.duration = duration

    def __call__(self, step: int) -> float:
        fraction = step / self.duration
        return self._between(fraction, self.start + fraction * (self.end - self.start))


class ExponentialSchedule(Schedule):
    """`max(end, start · exp(−rate · step))`, the annealing of Jang et al. (2017)."""

    def __init__(self, start: float, end: float, rate: float) -> None:
        self.start = float(start)
        self.end = float(end)
        self.rate = float(rate)

    def __call__(self, step: int) -> float:
        return max(self.end, self.start * math.exp(-self.rate * max(step, 0)))


class CosineSchedule(LinearSchedule):
    """Half a cosine from `start` to `end` over `duration` steps, then `end`: the linear
    schedule's span and keys, another shape."""

    def __call__(self, step: int) -> float:
        fraction = step / self.duration
        cosine = math.cos(math.pi * min(max(fraction, 0.0), 1.0))
        return self._between(fraction, self.end + 0.5 * (self.start - self.end) * (1.0 + cosine))
