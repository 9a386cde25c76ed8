"""Vector environments from config: Gymnasium ids (MinAtar's registered on demand), discrete
observations made one-hot, images made channels-first, and a check that the action space is
Discrete."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cloudpickle
import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import SyncVectorEnv
from gymnasium.wrappers import FlattenObservation, TransformObservation
from gymnasium.wrappers.vector import RecordEpisodeStatistics


class EnvConfigError(ValueError):
    """An environment the framework cannot train on; the message says why."""


@dataclass(frozen=True)
class EnvShape:
    """Sizes the networks need: one observation's shape and the number of actions."""

    obs_shape: tuple[int, ...]
    num_actions: int


MINATAR_PREFIX = "MinAtar/"


def _register_minatar() -> None:
    """MinAtar's Gymnasium ids exist only after `minatar.gym.register_envs()` (Young & Tian 2019)."""
    if any(env_id.startswith(MINATAR_PREFIX) for env_id in gym.registry):
        return
    try:
        import minatar.gym
    except ImportError as error:
        raise EnvConfigError(f"MinAtar environments need the `minatar` package ({error})") from None
    minatar.gym.register_envs()


def check_env_id(env_id: str) -> None:
    """Raise `EnvConfigError` unless Gymnasium's registry knows `env_id` (registering
    MinAtar's ids first when it asks for one)."""
    if env_id.startswith(MINATAR_PREFIX):
        _register_minatar()
    try:
        gym.spec(env_id)
    except gym.error.Error as error:
        raise EnvConfigError(f"env.id={env_id!r} is not a registered Gymnasium environment ({error})") from None


def _make_single(env_id: str, kwargs: dict[str, Any]) -> Callable[[], gym.Env]:
    def make() -> gym.Env:
        env = gym.make(env_id, **kwargs)
        if not isinstance(env.action_space, spaces.Discrete):
            raise EnvConfigError(
                f"env.id={env_id!r} has action space {env.action_space}; rlgumbel selects discrete "
                "actions, so it needs a Discrete action space"
            )
        observation_space = env.observation_space
        if isinstance(observation_space, spaces.Discrete):
            return FlattenObservation(env)  # one-hot vectors
        if isinstance(observation_space, spaces.Box) and len(observation_space.shape) == 3:
            return _channels_first(env)
        if isinstance(observation_space, spaces.Box) and len(observation_space.shape) in (1, 2):
            return env if len(observation_space.shape) == 1 else FlattenObservation(env)
        raise EnvConfigError(
            f"env.id={env_id!r} has observation space {observation_space}; supported are Discrete, and Box "
            "vectors, matrices (flattened) and images [height, width, channels]"
        )

    return make


def _channels_first(env: gym.Env) -> gym.Env:
    """Images [H, W, C] (Gymnasium's layout; MinAtar's boolean planes) → float32 [C, H, W],
    the layout of torch's convolutions."""
    space = env.observation_space
    low = np.transpose(np.broadcast_to(space.low, space.shape), (2, 0, 1)).astype(np.float32)
    high = np.transpose(np.broadcast_to(space.high, space.shape), (2, 0, 1)).astype(np.float32)
    return TransformObservation(env, _to_channels_first, spaces.Box(low, high, dtype=np.float32))


def _to_channels_first(obs: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.transpose(obs, (2, 0, 1)), dtype=np.float32)


def make_vector_env(id: str, num_envs: int, kwargs: dict[str, Any] | None = None) -> gym.vector.VectorEnv:
    """`num_envs` synchronous copies of `id` that record episode returns and lengths.

    Copies reset themselves on the step *after* an episode ends (Gymnasium 1.x next-step
    autoreset): the transition of that step is not a real one, and the caller must drop it.

    Args:
        id: any Gymnasium id, e.g. "CartPole-v1".
        num_envs: number of copies stepped together, >= 1.
        kwargs: keyword arguments for `gymnasium.make`.
    """
    check_env_id(id)
    factory = _make_single(id, dict(kwargs or {}))
    envs = SyncVectorEnv([factory] * num_envs, autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP)
    return RecordEpisodeStatistics(envs)


def env_shape(envs: gym.vector.VectorEnv) -> EnvShape:
    """Observation shape and action count of a vector env built by `make_vector_env`."""
    return EnvShape(
        obs_shape=tuple(int(n) for n in envs.single_observation_space.shape),
        num_actions=int(envs.single_action_space.n),
    )


def action_mask(info: dict[str, Any], num_envs: int, num_actions: int) -> torch.Tensor | None:
    """Allowed actions [N, A] bool from a vector env's `info["action_mask"]` (e.g. Taxi-v4),
    or None when the env gives no mask. A copy whose info lacks the mask allows every action."""
    if "action_mask" not in info:
        return None
    mask = torch.as_tensor(np.asarray(info["action_mask"], dtype=bool).reshape(num_envs, num_actions))
    present = torch.as_tensor(np.asarray(info.get("_action_mask", np.ones(num_envs, dtype=bool))))
    return mask | ~present[:, None]


_EPISODE_STATISTICS = (
    "episode_count",
    "episode_start_times",
    "episode_returns",
    "episode_lengths",
    "prev_dones",
    "time_queue",
    "return_queue",
    "length_queue",
)


def vector_env_state(envs: RecordEpisodeStatistics) -> bytes:
    """The full state of a vector env from `make_vector_env`: every copy (with its random
    generator), which copies reset on the next step, and the running episode statistics."""
    sync = envs.unwrapped
    # cloudpickle: wrappers such as FlattenObservation hold lambdas that pickle cannot store
    return cloudpickle.dumps(
        {
            "envs": sync.envs,
            "autoreset_envs": sync._autoreset_envs,
            "statistics": {name: getattr(envs, name) for name in _EPISODE_STATISTICS},
        }
    )


def restore_vector_env_state(envs: RecordEpisodeStatistics, state: bytes) -> None:
    """Put back what `vector_env_state` returned into a vector env of the same config."""
    values = pickle.loads(state)
    sync = envs.unwrapped
    if len(values["envs"]) != sync.num_envs:
        raise ValueError(f"checkpoint holds {len(values['envs'])} env copies, env.num_envs is {sync.num_envs}")
    sync.envs = values["envs"]
    sync._autoreset_envs = values["autoreset_envs"]
    for name, value in values["statistics"].items():
        setattr(envs, name, value)
