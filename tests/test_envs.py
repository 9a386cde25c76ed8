"""Environments: registry and space checks, one-hot observations, and the transitions the
trainer stores around episode ends (next-step autoreset; truncation is not termination)."""

from __future__ import annotations

import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

from rlgumbel.envs import EnvConfigError, env_shape, make_vector_env

COUNTER_ID = "rlgumbel-test/Counter-v0"


class CounterEnv(gym.Env):
    """Observation [episode id, time step]. An episode of even id terminates after 3 steps; one
    of odd id runs into the time limit (5 steps, truncation). Reward = the time step reached."""

    def __init__(self) -> None:
        self.observation_space = spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.action_space = spaces.Discrete(2)
        self.episode, self.t = -1, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.episode, self.t = self.episode + 1, 0
        return np.array([self.episode, 0], np.float32), {}

    def step(self, action):
        self.t += 1
        terminated = self.episode % 2 == 0 and self.t == 3
        return np.array([self.episode, self.t], np.float32), float(self.t), terminated, False, {}


@pytest.fixture(scope="module", autouse=True)
def counter_env():
    gym.register(COUNTER_ID, entry_point=CounterEnv, max_episode_steps=5)
    yield
    gym.registry.pop(COUNTER_ID)


def test_unknown_id_is_refused_with_the_key():
    with pytest.raises(EnvConfigError, match="env.id='NoSuchEnv-v9'"):
        make_vector_env("NoSuchEnv-v9", 1)


def test_continuous_action_space_is_refused_before_training():
    with pytest.raises(EnvConfigError, match="Discrete action space"):
        make_vector_env("Pendulum-v1", 1)


def test_discrete_observations_become_one_hot():
    envs = make_vector_env("Taxi-v4", 3)
    obs, _ = envs.reset(seed=0)
    assert env_shape(envs).obs_shape == (500,) and env_shape(envs).num_actions == 6
    assert obs.shape == (3, 500) and np.array_equal(obs.sum(1), np.ones(3)) and set(np.unique(obs)) == {0, 1}


def test_minatar_ids_register_on_demand_and_images_become_channels_first():
    envs = make_vector_env("MinAtar/Breakout-v1", 2)
    obs, _ = envs.reset(seed=0)
    raw = gym.make("MinAtar/Breakout-v1")  # registered by the call above
    raw_obs, _ = raw.reset(seed=0)
    assert raw_obs.shape == (10, 10, 4)
    assert env_shape(envs).obs_shape == (4, 10, 10) and env_shape(envs).num_actions == 3
    assert obs.dtype == np.float32 and obs.shape == (2, 4, 10, 10)
    assert np.array_equal(obs[0], np.moveaxis(raw_obs, -1, 0).astype(np.float32))


@pytest.mark.parametrize("game", ["breakout", "space_invaders", "asterix", "freeway", "seaquest"])
def test_minatar_presets_train_with_the_image_encoder(game, compose_config, tmp_path: Path):
    from conftest import TINY

    from rlgumbel.config import build_trainer

    cfg = compose_config(f"env=minatar_{game}", *TINY, "env.num_envs=2", "env.kwargs.max_episode_steps=100")
    trainer = build_trainer(cfg, tmp_path)
    networks = (trainer.agent.actor, trainer.agent.critic)
    assert all(net.encoder.filters is not None for net in networks)  # the convolutional encoder
    actor_before = [p.detach().clone() for p in trainer.agent.actor.parameters()]
    (summary,) = trainer.run()  # a single run: a population of one
    assert summary is not None, trainer.failures[0]
    assert summary["steps"] == 400 and math.isfinite(summary["final_eval_return_greedy"])
    assert any(not torch.equal(a, p) for a, p in zip(actor_before, trainer.agent.actor.parameters()))


def test_stored_transitions_never_straddle_episodes(compose_config, tmp_path: Path):
    from rlgumbel.config import build_trainer

    cfg = compose_config(
        f"env.id={COUNTER_ID}",
        "env.num_envs=3",
        "trainer.total_steps=90",
        "trainer.learning_starts=90",
        "trainer.eval_episodes=1",
        "trainer.progress=false",
    )
    trainer = build_trainer(cfg, tmp_path)
    episodes_at_start = _episodes(trainer)
    while trainer.step < 90:
        trainer._collect()
    buffer = trainer.buffer
    valid = buffer.valid[: buffer.filled]
    obs, next_obs = buffer.obs[: buffer.filled][valid], buffer.next_obs[: buffer.filled][valid]
    # every stored transition stays inside one episode and advances its clock by one
    assert torch.equal(next_obs[:, 0], obs[:, 0]) and torch.equal(next_obs[:, 1], obs[:, 1] + 1)
    # terminal flags only where the env terminated (even episodes at t=3), never at the time
    # limit (odd episodes at t=5), whose value the critic must bootstrap
    even = obs[:, 0] % 2 == 0
    expected = even & (next_obs[:, 1] == 3)
    assert torch.equal(buffer.terminated[: buffer.filled][valid], expected)
    # an episode ends (terminated or truncated) exactly where its clock stops
    assert torch.equal(buffer.done[: buffer.filled][valid], expected | (~even & (next_obs[:, 1] == 5)))
    assert ((~even) & (next_obs[:, 1] == 5)).any(), "no truncated episode was seen"
    assert (expected == 1).any(), "no terminated episode was seen"
    # 30 vector steps of 3 copies: all real transitions kept (each ended episode costs one
    # reset step per copy, which is dropped)
    assert buffer.size.tolist() == [90 - (_episodes(trainer) - episodes_at_start)]
    trainer.members[0].logger.close(None)


def _episodes(trainer) -> int:
    """Episodes started by the copies so far: each after the first cost one reset step."""
    return sum(int(env.unwrapped.episode) for env in trainer.members[0].envs.unwrapped.envs)
