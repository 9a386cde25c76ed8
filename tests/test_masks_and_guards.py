"""Action masks are honoured in rollouts, targets and evaluation; a NaN loss stops a strict
run with a clear message and the last good parameters, or is skipped and counted."""

from __future__ import annotations

import math
from pathlib import Path

import gymnasium as gym
import pytest
import torch
from conftest import CONFIG_DIR, TINY, read_scalars

from rlgumbel.checkpoint import load_latest_checkpoint
from rlgumbel.config import build_trainer

NAN_ENV = "rlgumbel-test/NaNRewardCartPole-v0"
SELECTOR_OPTIONS = sorted(p.stem for p in (CONFIG_DIR / "selector").glob("*.yaml"))


class NaNRewardAfter(gym.Wrapper):
    """CartPole whose rewards turn NaN after 250 steps of this copy."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.steps = 0

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.steps += 1
        return obs, math.nan if self.steps > 250 else reward, terminated, truncated, info


@pytest.fixture(scope="module", autouse=True)
def nan_env():
    gym.register(NAN_ENV, entry_point=lambda: NaNRewardAfter(gym.make("CartPole-v1")))
    yield
    gym.registry.pop(NAN_ENV)


@pytest.mark.parametrize("selector", SELECTOR_OPTIONS)
def test_masked_actions_are_never_taken_on_taxi(selector, compose_config, tmp_path: Path):
    schedule = ["schedule=constant"] if selector == "reinmax" else []
    cfg = compose_config("env=taxi", f"selector={selector}", *schedule, *TINY, "trainer.learning_starts=200")
    trainer = build_trainer(cfg, tmp_path)
    try:
        trainer.run()
        buffer = trainer.buffer
        assert buffer.masked and buffer.size > 300
        stored = buffer.valid[: buffer.filled]
        mask, action = buffer.mask[: buffer.filled][stored], buffer.action[: buffer.filled][stored]
        # every stored action (random ones before learning starts, the policy's after) was allowed
        assert mask.gather(-1, action.unsqueeze(-1)).all()
        assert not mask.all(), "Taxi forbids some actions in most states"
        # the masks stored for next states are the env's own for those states
        batch = buffer.sample(64, torch.Generator().manual_seed(0))
        logits = trainer.agent.logits(batch.next_obs, batch.next_mask)
        assert torch.isneginf(logits[~batch.next_mask]).all() and torch.isfinite(logits[batch.next_mask]).all()
    finally:
        trainer.members[0].logger.close(None)


def test_a_nan_loss_stops_a_strict_run_with_the_last_good_parameters(cli, tmp_path: Path):
    run_dir = tmp_path / "run"
    code, _, err = cli(
        *TINY, f"env.id={NAN_ENV}", "env.num_envs=1", "trainer.total_steps=600", f"hydra.run.dir={run_dir}"
    )
    assert code == 3
    line = err.strip().splitlines()[-1]
    assert line.startswith("error: training diverged at env step ") and "critic loss nan" in line
    assert "Last finite metrics: losses/actor" in line and "trainer.strict=false" in line
    assert "training diverged" in (run_dir / "error.txt").read_text()
    state, _, _ = load_latest_checkpoint(run_dir / "checkpoints")
    assert 250 < state["step"] < 600
    for tensor in state["agent"]["critic"].values():
        assert torch.isfinite(tensor).all()


def test_a_lenient_run_skips_and_counts_bad_batches(cli, tmp_path: Path):
    run_dir = tmp_path / "run"
    code, _out, err = cli(
        *TINY,
        f"env.id={NAN_ENV}",
        "env.num_envs=1",
        "trainer.total_steps=600",
        "trainer.strict=false",
        f"hydra.run.dir={run_dir}",
    )
    assert code == 0, err
    skipped = read_scalars(run_dir / "tb")["health/skipped_updates"]
    assert skipped[-1][1] > 0 and skipped[0][1] == 0
    state, _, _ = load_latest_checkpoint(run_dir / "checkpoints")
    assert state["step"] == 600 and state["skipped_updates"] == skipped[-1][1]
    for tensor in state["agent"]["actor"].values():
        assert torch.isfinite(tensor).all()
