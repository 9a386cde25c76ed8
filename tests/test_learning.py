"""Learning tests (slow): with the shipped defaults every selector learns CartPole-v1.

A uniformly random policy on CartPole-v1 returns 22 on average (standard deviation ~12 over
episodes), so the mean of 10 greedy evaluation episodes of a random policy lies within
22 ± 4 (one standard error). The threshold of 150 is more than 30 standard errors above it:
reaching it is learning, not luck. Seeds are fixed, so the outcome is deterministic on CPU.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rlgumbel.config import build_trainer

RANDOM_POLICY_RETURN = 22.0
THRESHOLD = 150.0
SEEDS = (0, 1, 2)


@pytest.mark.slow
@pytest.mark.parametrize("selector", ["argmax", "sample", "gumbel_softmax"])
def test_each_selector_beats_the_random_policy_on_cartpole(selector, compose_config, tmp_path: Path):
    best = []
    for seed in SEEDS:
        cfg = compose_config(f"selector={selector}", f"seed={seed}", "trainer.total_steps=40000",
                             "trainer.progress=false")
        summary = build_trainer(cfg, tmp_path / f"seed{seed}").run()
        best.append(summary["best_eval_return_greedy"])
    assert RANDOM_POLICY_RETURN < THRESHOLD
    assert sum(b >= THRESHOLD for b in best) >= 2, best
