"""Statistics of the groups' completed runs: final return, steps to threshold, P(improvement).

Each group's seeds give:

- final return: the last value of the metric (default `charts/eval_return_greedy`) per run;
  its mean and its IQM (interquartile mean, `scipy.stats.trim_mean(x, 0.25)`) across seeds,
  with a 95% percentile bootstrap confidence interval (`scipy.stats.bootstrap`, fixed seed).
  The bootstrap is stratified in the sense of Agarwal et al. (2021, "Deep RL at the edge of
  the statistical precipice"): seeds are resampled within their group, and a group holds a
  single env, so each group is one stratum.
- steps to threshold: per run the first env step at which the metric reaches the threshold
  (default the run's `env.solved_return`); the group's median counts a run that never reaches
  it as +∞, so the median is finite only when at least half of the seeds reach it.
- probability of improvement P(X > Y) between two groups: the fraction of seed pairs in which
  X's final return beats Y's, ties counting one half (the Mann-Whitney U statistic / (n·m)).

Only completed runs (HParams session end STATUS_SUCCESS) enter the statistics. Failed runs
(STATUS_FAILURE: the run crashed) and incomplete runs (no session end: still running,
interrupted or killed) are listed by name and never averaged in, as are run folders that
several runs of a sweep logged into (status SHARED).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from rlgumbel import aggregate
from rlgumbel.report.grouping import Group, method_name
from rlgumbel.report.runs import Series

CONFIDENCE_LEVEL = 0.95
BOOTSTRAP_RESAMPLES = 9_999
BOOTSTRAP_METHOD = "percentile"
BOOTSTRAP_BATCH = 1_000  # resamples per vectorised batch: bounds memory for long learning curves


def iqm(values: np.ndarray, axis: int = -1) -> np.ndarray:
    """Interquartile mean: the 25% trimmed mean along `axis` (Agarwal et al. 2021)."""
    return stats.trim_mean(values, 0.25, axis=axis)


def bootstrap_ci(values: np.ndarray, statistic: Any, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """95% percentile bootstrap confidence interval of `statistic` over seeds (axis 0).

    Args:
        values: [S] or [S, T] values of S seeds (at T steps).
        statistic: vectorised statistic `f(x, axis)`, e.g. `iqm` or `np.mean`.
        seed: seeds a fresh numpy Generator, so every interval is reproducible on its own.
    Returns:
        (low, high), each of shape values.shape[1:]; NaN with fewer than two seeds.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.shape[0] < 2:
        nan = np.full(values.shape[1:], np.nan)
        return nan, nan
    result = stats.bootstrap(
        (values,),
        statistic,
        n_resamples=BOOTSTRAP_RESAMPLES,
        batch=BOOTSTRAP_BATCH,
        vectorized=True,
        axis=0,
        confidence_level=CONFIDENCE_LEVEL,
        method=BOOTSTRAP_METHOD,
        rng=np.random.default_rng(seed),
    )
    return result.confidence_interval.low, result.confidence_interval.high


def steps_to_threshold(series: Series, threshold: float) -> int | None:
    """The first env step at which the series reaches `threshold` (None if it never does)."""
    reached = np.flatnonzero(series.values >= threshold)
    return int(series.steps[reached[0]]) if len(reached) else None


def median_steps(steps: Sequence[int | None]) -> float:
    """Median over seeds, a seed that never reached the threshold (None) counting as +∞."""
    if not steps:
        return math.nan
    return float(np.median([math.inf if s is None else s for s in steps]))


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> float:
    """P(X > Y) over all pairs of a seed of X and a seed of Y, ties counting 1/2.

    Args:
        x: [N] final returns of one group; y: [M] of another.
    Returns:
        The Mann-Whitney U statistic of x divided by N·M.
    """
    x, y = np.asarray(x)[:, None], np.asarray(y)[None, :]
    return float(np.mean((x > y) + 0.5 * (x == y)))


def final_value(series: Series) -> float:
    """The last value logged (at the largest step; the later one if logged twice there)."""
    last = np.flatnonzero(series.steps == series.steps.max())[-1]
    return float(series.values[last])


@dataclass
class GroupSummary:
    """The statistics of one group's completed runs (the rows of the report's table).

    Attributes:
        group: the group.
        finals: [S] final metric value per completed seed with data, in run order.
        mean, iqm, ci_low, ci_high: of `finals` (NaN when empty; CI NaN under two seeds).
        threshold: the steps-to-threshold level (None: no threshold known).
        steps: per completed seed, the first step reaching the threshold, or None.
        median_steps: median of `steps`, not-reached counting +∞.
    """

    group: Group
    finals: np.ndarray
    mean: float
    iqm: float
    ci_low: float
    ci_high: float
    threshold: float | None
    steps: list[int | None] = field(default_factory=list)
    median_steps: float = math.nan

    @property
    def reached(self) -> int:
        return sum(s is not None for s in self.steps)


def threshold_of(group: Group, threshold: float | None) -> float | None:
    """The given threshold, else the group's `env.solved_return` (None if neither is set)."""
    if threshold is not None:
        return threshold
    solved = group.config.get("env.solved_return")
    if solved is None or (isinstance(solved, float) and math.isnan(solved)):
        return None
    return float(solved)


def summarize_group(group: Group, metric: str, threshold: float | None, seed: int) -> GroupSummary:
    """Final-return statistics and steps to threshold of a group's completed runs.

    Args:
        group: the group.
        metric: the scalar tag whose last value is a run's final return.
        threshold: the level for steps-to-threshold (None: the group's env.solved_return).
        seed: bootstrap seed.
    Returns:
        The summary.
    """
    series = group.completed_series(metric)
    finals = np.array([final_value(s) for s in series], dtype=np.float64)
    level = threshold_of(group, threshold)
    steps = [steps_to_threshold(s, level) for s in series] if level is not None else []
    if len(finals) == 0:
        return GroupSummary(group, finals, math.nan, math.nan, math.nan, math.nan, level, steps)
    low, high = bootstrap_ci(finals, iqm, seed)
    return GroupSummary(
        group,
        finals,
        float(finals.mean()),
        float(iqm(finals)),
        float(low),
        float(high),
        level,
        steps,
        median_steps(steps) if level is not None else math.nan,
    )


def _random_and_solved(group: Group) -> tuple[float, float] | None:
    random_return, solved = group.config.get("env.random_return"), group.config.get("env.solved_return")
    if random_return is None or solved is None or float(random_return) == float(solved):
        return None
    return float(random_return), float(solved)


def normalised_by_method(
    summaries: Mapping[str, Sequence[GroupSummary]],
) -> tuple[dict[str, dict[str, np.ndarray]], list[str]]:
    """Per method run in at least two envs, its normalised final returns by env; and the env of each
    group left out for want of `env.random_return` or `env.solved_return`."""
    by_method: dict[str, dict[str, np.ndarray]] = {}
    skipped = []
    for env, env_summaries in summaries.items():
        for summary in env_summaries:
            scale = _random_and_solved(summary.group)
            if scale is None:
                skipped.append(env)
                continue
            if len(summary.finals):
                scores = aggregate.normalised_scores(summary.finals, *scale)
                by_method.setdefault(method_name(summary.group.label), {})[env] = scores
    return {name: strata for name, strata in by_method.items() if len(strata) >= 2}, skipped
