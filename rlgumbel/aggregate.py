"""Across envs: normalised scores, their interquartile mean with stratified bootstrap intervals,
and performance profiles (Agarwal et al. 2021, "Deep reinforcement learning at the edge of the
statistical precipice", the method of the `rliable` package).

A run's normalised score is `(return − random) / (solved − random)`: 0 is the uniformly random
policy, 1 the env's solved return. Scores are grouped by env (the strata): the bootstrap
resamples runs with replacement within each env, so every resample keeps each env's number of
runs, and pools them; the interquartile mean (IQM) of the pooled scores is the point estimate.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy import stats

RESAMPLES = 2_000
CONFIDENCE_LEVEL = 0.95


def normalised_scores(returns: np.ndarray, random_return: float, solved_return: float) -> np.ndarray:
    """`(returns − random_return) / (solved_return − random_return)`, elementwise.

    Raises:
        ValueError: the solved and random returns coincide (no scale to normalise by).
    """
    if solved_return == random_return:
        raise ValueError(f"cannot normalise: solved return and random return are both {solved_return}")
    return (np.asarray(returns, dtype=np.float64) - random_return) / (solved_return - random_return)


def pooled_iqm(scores: np.ndarray, axis: int = -1) -> np.ndarray:
    """Interquartile mean (25% trimmed mean) along `axis`."""
    return stats.trim_mean(scores, 0.25, axis=axis)


def stratified_resamples(strata: Sequence[np.ndarray], resamples: int, seed: int) -> np.ndarray:
    """Bootstrap resamples of pooled runs, resampled within each stratum.

    Args:
        strata: per env, the [N_e] scores of its runs (N_e ≥ 1).
        resamples: R.
        seed: seeds a numpy Generator, so the resamples are reproducible.
    Returns:
        [R, Σ N_e]: row r pools, for each env, N_e of its runs drawn with replacement.
    """
    rng = np.random.default_rng(seed)
    parts = [
        np.asarray(scores, dtype=np.float64)[rng.integers(len(scores), size=(resamples, len(scores)))]
        for scores in strata
    ]
    return np.concatenate(parts, axis=1)


def stratified_interval(
    strata: Sequence[np.ndarray], statistic: Callable[..., np.ndarray], seed: int, resamples: int = RESAMPLES
) -> tuple[float, float]:
    """95% percentile interval of `statistic(pooled scores, axis=-1)` over stratified resamples."""
    values = statistic(stratified_resamples(strata, resamples, seed), axis=-1)
    tail = 100 * (1 - CONFIDENCE_LEVEL) / 2
    low, high = np.percentile(values, [tail, 100 - tail], axis=0)
    return float(low), float(high)


def profile(scores: np.ndarray, thresholds: np.ndarray, axis: int = -1) -> np.ndarray:
    """The performance profile: the fraction of runs whose score exceeds each threshold.

    Args:
        scores: [..., N] pooled scores (N along `axis`).
        thresholds: [T].
    Returns:
        [..., T].
    """
    scores = np.moveaxis(np.asarray(scores, dtype=np.float64), axis, -1)
    return (scores[..., None, :] > thresholds[:, None]).mean(-1)


def profile_with_interval(
    strata: Sequence[np.ndarray], thresholds: np.ndarray, seed: int, resamples: int = RESAMPLES
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The performance profile of pooled runs with 95% stratified bootstrap bands.

    Returns:
        profile [T], low [T], high [T].
    """
    pooled = np.concatenate([np.asarray(s, dtype=np.float64) for s in strata])
    curves = profile(stratified_resamples(strata, resamples, seed), thresholds)  # [R, T]
    tail = 100 * (1 - CONFIDENCE_LEVEL) / 2
    low, high = np.percentile(curves, [tail, 100 - tail], axis=0)
    return profile(pooled, thresholds), low, high
