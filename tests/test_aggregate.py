"""Aggregation across envs (rlgumbel.aggregate) and the report's "Across envs" section:
normalised scores, stratified bootstrap intervals, performance profiles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from test_report import run_config, write_run

from rlgumbel import aggregate, report


def test_normalised_scores_put_random_at_zero_and_solved_at_one():
    scores = aggregate.normalised_scores(np.array([-500.0, -100.0, -300.0]), random_return=-500.0, solved_return=-100.0)
    np.testing.assert_allclose(scores, [0.0, 1.0, 0.5])
    with pytest.raises(ValueError, match="cannot normalise"):
        aggregate.normalised_scores(np.zeros(2), 3.0, 3.0)


def test_resamples_keep_each_envs_runs_within_their_block():
    strata = [np.array([1.0, 2.0, 3.0]), np.array([10.0, 20.0]), np.array([100.0])]
    resamples = aggregate.stratified_resamples(strata, resamples=500, seed=0)
    assert resamples.shape == (500, 6)
    assert set(np.unique(resamples[:, :3])) == {1.0, 2.0, 3.0}
    assert set(np.unique(resamples[:, 3:5])) == {10.0, 20.0}
    assert (resamples[:, 5] == 100.0).all()
    np.testing.assert_array_equal(resamples, aggregate.stratified_resamples(strata, 500, seed=0))


def test_one_stratum_gives_the_ordinary_percentile_bootstrap():
    # With a single env the stratified bootstrap is the ordinary one: its 95% interval of the
    # IQM of 30 draws must agree with scipy's percentile bootstrap. Both are Monte-Carlo
    # estimates from 2,000 vs 9,999 resamples; the endpoints' sampling error is about
    # sd·sqrt(q(1−q)/R)/density ~ 0.02 here, so they must agree within 0.1.
    scores = np.random.default_rng(1).normal(size=30)
    low, high = aggregate.stratified_interval([scores], aggregate.pooled_iqm, seed=0)
    reference = stats.bootstrap(
        (scores,),
        lambda x, axis: stats.trim_mean(x, 0.25, axis=axis),
        n_resamples=9_999,
        method="percentile",
        rng=np.random.default_rng(0),
    )
    assert low == pytest.approx(reference.confidence_interval.low, abs=0.1)
    assert high == pytest.approx(reference.confidence_interval.high, abs=0.1)


def test_stratification_narrows_the_interval_when_envs_differ():
    # Two envs whose scores sit at 0 and at 1: an unstratified bootstrap can draw 5 runs of one
    # env and 1 of the other, a stratified one never, so its interval is strictly narrower.
    strata = [np.array([0.0, 0.01, 0.02]), np.array([1.0, 1.01, 1.02])]
    pooled = np.concatenate(strata)
    stratified = aggregate.stratified_interval(strata, np.mean, seed=0)
    plain = aggregate.stratified_interval([pooled], np.mean, seed=0)
    assert plain[0] < stratified[0] <= stratified[1] < plain[1]
    assert stratified[0] == pytest.approx(0.5, abs=0.02) and stratified[1] == pytest.approx(0.52, abs=0.02)


def test_profile_counts_runs_above_each_threshold():
    scores = np.array([0.1, 0.5, 0.5, 0.9])
    thresholds = np.array([0.0, 0.5, 0.95])
    expected = [np.mean([s > t for s in scores]) for t in thresholds]  # the naive loop
    np.testing.assert_allclose(aggregate.profile(scores, thresholds), expected)
    curve, low, high = aggregate.profile_with_interval([scores[:2], scores[2:]], np.linspace(0, 1, 11), seed=0)
    assert (np.diff(curve) <= 0).all() and (low <= curve + 1e-12).all() and (curve <= high + 1e-12).all()


def test_report_aggregates_a_method_over_envs(tmp_path: Path):
    # Two envs, two selectors, three seeds each. Normalised finals: CartPole random 20, solved
    # 475; Acrobot random −500, solved −100.
    envs = {
        "CartPole-v1": (475.0, 20.0, [475.0, 247.5, 20.0]),
        "Acrobot-v1": (-100.0, -500.0, [-100.0, -300.0, -500.0]),
    }
    for env, (solved, random_return, finals) in envs.items():
        for selector in ("sample", "gumbel_softmax"):
            for seed, final in enumerate(finals):
                config = run_config(seed, selector, env=env, solved_return=solved)
                config["env"]["random_return"] = random_return
                value = final if selector == "sample" else random_return  # gumbel: random everywhere
                write_run(tmp_path / "sweep" / env / f"{selector}_{seed}", config, {1000: value, 2000: value})
    result = report.write_report(tmp_path / "sweep", tmp_path / "out")
    section = result.markdown[result.markdown.index("## Across envs") :]
    rows = {
        line.split("|")[1].strip(): line
        for line in section.splitlines()
        if line.startswith("| sample") or line.startswith("| gumbel_softmax")
    }
    # sample: normalised scores 1, 0.5, 0 in each env: IQM of the six pooled = 0.5
    assert "| 2 | 6 | 0.50 [" in rows["sample, constant τ=1"]
    assert "| 2 | 6 | 0.00 [0.00, 0.00] | 0.00 |" in rows["gumbel_softmax (soft), constant τ=1"]
    assert (tmp_path / "out" / "performance_profiles.png").stat().st_size > 10_000


def test_report_without_random_returns_has_no_aggregate(tmp_path: Path):
    for env in ("CartPole-v1", "Acrobot-v1"):
        for seed in range(2):
            write_run(tmp_path / "sweep" / env / f"run{seed}", run_config(seed, env=env), {2000: 1.0})
    assert "## Across envs" not in report.write_report(tmp_path / "sweep", tmp_path / "out").markdown
