"""Benchmark: the mean return of the uniformly random policy on each env preset, and of the
optimal policy where the env publishes its model.

The random returns are the `env.random_return` values of the presets (configs/env/), the zero
of the report's normalised score. For each preset, runs `--episodes` episodes of uniformly
random actions (among the allowed ones, where the env gives action masks) in a vector env built
the way training builds it (`make_vector_env` with the preset's id and kwargs), each copy reset
with its own seed, and prints the mean return with its standard error.

For the toy-text envs, whose transition table `P` is public, value iteration gives the optimal
return expected from the start-state distribution: the best any agent can average, against
which a preset's `solved_return` is set (Gymnasium's threshold 8 for Taxi-v4 lies above it).

Usage:
    python benchmarks/random_returns.py [--envs cartpole acrobot ...] [--episodes 100]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from omegaconf import OmegaConf

from rlgumbel.configs import CONFIG_DIR
from rlgumbel.envs import action_mask, env_actions, env_shape, make_vector_env
from rlgumbel.networks import padding_mask
from rlgumbel.selectors import gumbel_max_sample

CONFIGS = Path(CONFIG_DIR) / "env"


def random_returns(env_id: str, kwargs: dict, episodes: int, seed: int = 0) -> np.ndarray:
    """[episodes] returns of uniformly random actions (each component uniform among its choices),
    one episode per vector-env copy; the team's return for several agents."""
    envs = make_vector_env(env_id, episodes, kwargs)
    shape = env_shape(envs)
    allowed = ~padding if (padding := padding_mask(shape.action_sizes)) is not None else None
    generator = torch.Generator().manual_seed(seed)
    _, info = envs.reset(seed=seed)
    returns, done = np.zeros(episodes), np.zeros(episodes, dtype=bool)
    while not done.all():
        mask = action_mask(info, episodes, shape.num_actions)  # [N, 1, A] or None
        logits = torch.zeros(episodes, shape.components, shape.num_actions)
        for allowed_now in (mask, allowed):
            if allowed_now is not None:
                logits = logits.masked_fill(~allowed_now, float("-inf"))
        action = env_actions(gumbel_max_sample(logits, generator), envs)
        _, reward, terminated, truncated, info = envs.step(action)
        returns += np.where(done, 0.0, reward)
        done |= terminated | truncated
    envs.close()
    return returns


def optimal_return(env_id: str, kwargs: dict) -> float | None:
    """The optimal undiscounted return expected from the start distribution, by value
    iteration on the env's transition table; None for envs without one."""
    env = gym.make(env_id, **kwargs).unwrapped
    if not hasattr(env, "P") or not hasattr(env, "initial_state_distrib"):
        return None
    states, actions = len(env.P), len(env.P[0])
    next_state = np.zeros((states, actions), dtype=np.int64)
    reward, terminal = np.zeros((states, actions)), np.zeros((states, actions), dtype=bool)
    for s in range(states):
        for a in range(actions):
            ((_, s2, r, done),) = env.P[s][a]  # deterministic envs: one outcome each
            next_state[s, a], reward[s, a], terminal[s, a] = s2, r, done
    value = np.zeros(states)
    for _ in range(10_000):
        updated = (reward + np.where(terminal, 0.0, value[next_state])).max(1)
        if np.abs(updated - value).max() < 1e-9:
            break
        value = updated
    return float(env.initial_state_distrib @ value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--envs", nargs="+", default=sorted(p.stem for p in CONFIGS.glob("*.yaml")))
    parser.add_argument("--episodes", type=int, default=100)
    args = parser.parse_args()
    print(
        f"| env preset | id | random return (mean ± s.e., {args.episodes} episodes) | preset's random_return "
        "| optimal return | preset's solved_return |"
    )
    print("|---|---|---:|---:|---:|---:|")
    for name in args.envs:
        env = OmegaConf.to_container(OmegaConf.load(CONFIGS / f"{name}.yaml").env, resolve=True)
        returns = random_returns(env["id"], env.get("kwargs") or {}, args.episodes)
        sem = returns.std(ddof=1) / math.sqrt(len(returns))
        optimal = optimal_return(env["id"], env.get("kwargs") or {})
        print(
            f"| {name} | {env['id']} | {returns.mean():.4g} ± {sem:.2g} | {env.get('random_return', '—')} | "
            f"{'—' if optimal is None else f'{optimal:.2f}'} | {env.get('solved_return', '—')} |"
        )


if __name__ == "__main__":
    main()
