"""Multi-agent envs in one form: a Gymnasium env whose observation is one padded row per agent
[D, O], whose action is `MultiDiscrete` (one choice per agent) and whose reward is the team's.

Two adapters bring envs into that form:
- `TupleAgentsEnv` wraps Gymnasium envs with `Tuple(Box, …)` observations, `Tuple(Discrete, …)`
  actions and a list of rewards, one per agent (lbforaging, rware);
- `ParallelAgentsEnv` wraps PettingZoo parallel envs (mpe2's `simple_speaker_listener_v4`,
  `simple_spread_v3`, …).

The team reward is the sum over agents (what LBF and RWARE papers report as the return); each
step's per-agent rewards are in `info["agent_rewards"]` [D], and the step that ends an episode
carries its per-agent returns in `info["agent_returns"]` [D]. Observations of agents with fewer
features are padded with zeros; `metadata[AGENTS]` holds D, which tells the learner to give each
agent's actor its own row (decentralised execution).
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Sequence
from typing import Any

import cloudpickle
import gymnasium as gym
import numpy as np
from gymnasium import spaces

AGENTS = "rlgumbel.agents"  # metadata key: the number of agents D of a multi-agent env


def _natural_end_of_foraging(env: gym.Env) -> bool:
    # LBF ends an episode when every food is collected, or at its step limit: only the first is terminal
    return bool(env.field.sum() == 0)


def _natural_end_of_warehouse(env: gym.Env) -> bool:
    return False  # RWARE's episodes end only at its step limits (max_steps, max_inactivity_steps)


# Envs that report a time limit as `done`: how to tell a terminal state from a truncation, by the
# class of the unwrapped env. Others are trusted: their `terminated` and `truncated` are kept.
NATURAL_END: dict[str, Callable[[gym.Env], bool]] = {
    "lbforaging.foraging.environment.ForagingEnv": _natural_end_of_foraging,
    "rware.warehouse.Warehouse": _natural_end_of_warehouse,
}


def team_spaces(
    observations: Sequence[spaces.Space], actions: Sequence[spaces.Space]
) -> tuple[spaces.Box, spaces.MultiDiscrete]:
    """The team's spaces from each agent's: observations [D, O] (O the largest agent's vector;
    the padding is 0, its bounds infinite) and one Discrete choice per agent; raises ValueError
    for other spaces."""
    for space in observations:
        if not (isinstance(space, spaces.Box) and len(space.shape) == 1):
            raise ValueError(f"each agent's observation must be a vector (Box of one dimension), got {space}")
    for space in actions:
        if not isinstance(space, spaces.Discrete):
            raise ValueError(f"each agent's action must be Discrete, got {space}")
    width = max(space.shape[0] for space in observations)
    # the padding (always 0) unbounded: Gymnasium's checker warns of a box whose bounds are equal
    low = np.full((len(observations), width), -np.inf, dtype=np.float32)
    high = np.full((len(observations), width), np.inf, dtype=np.float32)
    for row, space in enumerate(observations):
        low[row, : space.shape[0]] = space.low
        high[row, : space.shape[0]] = space.high
    sizes = [int(space.n) for space in actions]
    return spaces.Box(low, high, dtype=np.float32), spaces.MultiDiscrete(sizes)


class _TeamForm:
    """What both adapters share: padding observations, summing rewards, per-agent returns."""

    def _init_team(self, observations: Sequence[spaces.Space], actions: Sequence[spaces.Space], metadata: dict) -> None:
        self.observation_space, self.action_space = team_spaces(observations, actions)
        self.agent_count = len(actions)
        self._widths = [space.shape[0] for space in observations]
        self.metadata = {**metadata, AGENTS: self.agent_count}
        self._agent_returns = np.zeros(self.agent_count)

    def _observe(self, observations: Sequence[np.ndarray]) -> np.ndarray:
        team = np.zeros(self.observation_space.shape, dtype=np.float32)
        for row, (obs, width) in enumerate(zip(observations, self._widths)):
            team[row, :width] = obs
        return team

    def _start(self) -> None:
        self._agent_returns = np.zeros(self.agent_count)

    def _reward(self, rewards: Sequence[float], ended: bool, info: dict[str, Any]) -> float:
        """The team reward of one step; the agents' rewards (and returns, if the episode ended) into `info`."""
        agent_rewards = np.asarray(rewards, dtype=np.float64)
        self._agent_returns += agent_rewards
        info["agent_rewards"] = agent_rewards
        if ended:
            info["agent_returns"] = self._agent_returns.copy()
        return float(agent_rewards.sum())


class TupleAgentsEnv(_TeamForm, gym.Wrapper):
    """A Gymnasium env of D agents (`Tuple` observation and action spaces, a list of rewards) in
    the team form. A `done` that `NATURAL_END` does not call terminal is a truncation.

    Args:
        env: e.g. `gymnasium.make("Foraging-8x8-2p-2f-coop-v3")`.
    """

    def __init__(self, env: gym.Env) -> None:
        gym.Wrapper.__init__(self, env)
        self._init_team(env.observation_space.spaces, env.action_space.spaces, dict(env.metadata))
        unwrapped = env.unwrapped
        self._natural_end = NATURAL_END.get(f"{type(unwrapped).__module__}.{type(unwrapped).__qualname__}")

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        obs, info = self.env.reset(seed=seed, options=options)
        self._start()
        return self._observe(obs), dict(info)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        obs, rewards, terminated, truncated, info = self.env.step(tuple(int(a) for a in action))
        if self._natural_end is not None and (terminated or truncated):
            terminated = self._natural_end(self.env.unwrapped)
            truncated = not terminated
        info = dict(info)
        reward = self._reward(rewards, bool(terminated or truncated), info)
        return self._observe(obs), reward, bool(terminated), bool(truncated), info


class ParallelAgentsEnv(_TeamForm, gym.Env):
    """A PettingZoo parallel env in the team form: the agents in `possible_agents` order; the
    episode ends when every agent's does (terminated if all terminated, else truncated).

    Args:
        env: a PettingZoo `ParallelEnv`, e.g. `mpe2.simple_speaker_listener_v4.parallel_env()`.
            Envs whose agents leave before the episode's end are not supported.
    """

    def __init__(self, env: Any) -> None:
        self.env = env
        self.agents = list(env.possible_agents)
        self._init_team(
            [env.observation_space(agent) for agent in self.agents],
            [env.action_space(agent) for agent in self.agents],
            dict(getattr(env, "metadata", {})),
        )
        self.render_mode = getattr(env, "render_mode", None)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        obs, _ = self.env.reset(seed=seed, options=options)
        self._start()
        return self._observe([obs[agent] for agent in self.agents]), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        live = list(self.env.agents)
        if live != self.agents:
            raise RuntimeError(f"agents {sorted(set(self.agents) - set(live))} left mid-episode; not supported")
        obs, rewards, terminations, truncations, _ = self.env.step(
            {agent: int(choice) for agent, choice in zip(self.agents, action)}
        )
        ended = [terminations[agent] or truncations[agent] for agent in self.agents]
        terminated = all(terminations[agent] for agent in self.agents)
        truncated = all(ended) and not terminated
        info: dict[str, Any] = {}
        reward = self._reward([rewards[agent] for agent in self.agents], terminated or truncated, info)
        return self._observe([obs[agent] for agent in self.agents]), reward, terminated, truncated, info

    def render(self) -> Any:
        return self.env.render()

    def close(self) -> None:
        self.env.close()

    def __getstate__(self) -> dict[str, Any]:
        # PettingZoo's envs pickle as their constructor's arguments (EzPickle), which would
        # restore a fresh episode: keep the raw env's own state too (checkpoints resume exactly)
        return {**self.__dict__, "_raw_state": _picklable_state(self.env.unwrapped)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        raw_state = state.pop("_raw_state")
        self.__dict__.update(state)
        self.env.unwrapped.__dict__.update(raw_state)


def _picklable_state(env: Any) -> dict[str, Any]:
    """The attributes of `env` that pickle: all but a renderer's surfaces and fonts (pygame),
    which the rebuilt env makes anew and which do not enter its dynamics."""
    state = {}
    for name, value in vars(env).items():
        try:
            cloudpickle.dumps(value)
        except (TypeError, pickle.PicklingError):
            continue
        state[name] = value
    return state


def make_parallel_env(module: str, **kwargs: Any) -> ParallelAgentsEnv:
    """`ParallelAgentsEnv` of the PettingZoo module `module`'s `parallel_env(**kwargs)`, e.g.
    `make_parallel_env("mpe2.simple_spread_v3", max_cycles=25)`: the entry point of the `mpe2/…` ids."""
    import importlib

    return ParallelAgentsEnv(importlib.import_module(module).parallel_env(**kwargs))
