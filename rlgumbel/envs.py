"""Vector environments from config: Gymnasium ids (MinAtar's, lbforaging's, rware's and mpe2's
registered on demand), discrete observations made one-hot, images made channels-first,
multi-agent envs brought into one form (rlgumbel/multiagent.py), and a check of the spaces."""

from __future__ import annotations

import importlib
import importlib.util
import math
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
from gymnasium.wrappers import FlattenObservation, PassiveEnvChecker, TransformObservation
from gymnasium.wrappers.vector import RecordEpisodeStatistics

from rlgumbel.multiagent import AGENTS, TupleAgentsEnv, make_parallel_env


class EnvConfigError(ValueError):
    """An environment the framework cannot train on; the message says why."""


SUPPORTED_ACTIONS = (
    "rlgumbel selects discrete actions, so it needs a Discrete action space, a MultiDiscrete or "
    "Tuple(Discrete, …) one (several choices of one agent), or Tuple(Discrete, …) actions with Tuple(Box, …) "
    "observations and a reward per agent (several agents); every choice counted from 0"
)


@dataclass(frozen=True)
class EnvShape:
    """Sizes the networks need.

    Attributes:
        obs_shape: one observation's shape; [D, O] for a multi-agent env (a padded row per agent).
        action_sizes: the choices of each of the D action components (D = 1: one categorical).
        agents: whether the D components are the actions of D agents, each observing its own row.
    """

    obs_shape: tuple[int, ...]
    action_sizes: tuple[int, ...]
    agents: bool = False

    @property
    def num_actions(self) -> int:
        """A: the size every component is padded to (masked logits mark the padding)."""
        return max(self.action_sizes)

    @property
    def components(self) -> int:
        """D."""
        return len(self.action_sizes)

    @property
    def joint_actions(self) -> int:
        """The number of joint actions, Π_d sizes[d]."""
        return math.prod(self.action_sizes)


MINATAR_PREFIX = "MinAtar/"
MPE2_PREFIX = "mpe2/"


def _register_minatar() -> None:
    """MinAtar's Gymnasium ids exist only after `minatar.gym.register_envs()` (Young & Tian 2019)."""
    if any(env_id.startswith(MINATAR_PREFIX) for env_id in gym.registry):
        return
    import minatar.gym

    minatar.gym.register_envs()


def _register_lbforaging() -> None:
    import lbforaging  # noqa: F401  (registers the Foraging-… ids on import)


def _register_rware() -> None:
    import rware  # noqa: F401  (registers the rware-… ids on import)


def _register_mpe2(env_id: str) -> None:
    """`mpe2/<module>` (e.g. `mpe2/simple_spread_v3`): the PettingZoo parallel env of
    `mpe2.<module>` in the team form, with discrete actions (mpe2's default)."""
    module = f"mpe2.{env_id.removeprefix(MPE2_PREFIX)}"
    if importlib.util.find_spec(module) is None:
        return  # gym.spec below names the id it does not know
    gym.register(env_id, entry_point=make_parallel_env, kwargs={"module": module})


# Families of ids registered when an id asks for one: (prefix, registrar, the package it needs).
FAMILIES: tuple[tuple[str, Callable[[str], None], str], ...] = (
    (MINATAR_PREFIX, lambda env_id: _register_minatar(), "minatar"),
    ("Foraging", lambda env_id: _register_lbforaging(), "lbforaging"),
    ("rware-", lambda env_id: _register_rware(), "rware"),
    (MPE2_PREFIX, _register_mpe2, "mpe2"),
)


def check_env_id(env_id: str) -> None:
    """Raise `EnvConfigError` unless Gymnasium's registry knows `env_id`, registering the ids of
    `FAMILIES` first when it asks for one of them. `module:id` imports `module` first, as
    `gymnasium.make` does, so an env of one's own registers itself on import."""
    if ":" in env_id:
        module, env_id = env_id.split(":", 1)
        try:
            importlib.import_module(module)
        except ImportError as error:
            raise EnvConfigError(f"env.id={module}:{env_id}: cannot import {module!r} ({error})") from None
    for prefix, register, package in FAMILIES:
        if env_id.startswith(prefix) and env_id not in gym.registry:
            try:
                register(env_id)
            except ImportError as error:
                raise EnvConfigError(f"env.id={env_id!r} needs the `{package}` package ({error})") from None
    try:
        gym.spec(env_id)
    except gym.error.Error as error:
        raise EnvConfigError(f"env.id={env_id!r} is not a registered Gymnasium environment ({error})") from None


def _is_tuple_of(space: spaces.Space, kind: type) -> bool:
    return isinstance(space, spaces.Tuple) and all(isinstance(part, kind) for part in space.spaces)


class _TupleToMultiDiscrete(gym.ActionWrapper):
    """One agent's `Tuple(Discrete, …)` action as the equivalent `MultiDiscrete`."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.action_space = spaces.MultiDiscrete([int(part.n) for part in env.action_space.spaces])

    def action(self, action: np.ndarray) -> tuple[int, ...]:
        return tuple(int(choice) for choice in action)


def _starts_at_zero(space: spaces.Space) -> bool:
    return not np.any(getattr(space, "start", 0))


def _is_multi_agent(env: gym.Env) -> bool:
    """A `Tuple` of observations and a `Tuple` of Discrete actions: one of each per agent."""
    return isinstance(env.observation_space, spaces.Tuple) and _is_tuple_of(env.action_space, spaces.Discrete)


def _team_env(env_id: str, kwargs: dict[str, Any]) -> gym.Env:
    """A multi-agent env in the team form (`TupleAgentsEnv`), Gymnasium's passive checker on the
    team form: the agents' own env returns a list of rewards, which the checker would refuse."""
    env = gym.make(env_id, **{**kwargs, "disable_env_checker": True})
    if not all(_starts_at_zero(part) for part in env.action_space.spaces):
        raise EnvConfigError(f"env.id={env_id!r} has action space {env.action_space}; choices must start at 0")
    try:
        team = TupleAgentsEnv(env)
    except ValueError as error:
        raise EnvConfigError(f"env.id={env_id!r}: {error}") from None
    return team if kwargs.get("disable_env_checker") else PassiveEnvChecker(team)


def _with_actions_checked(env: gym.Env, env_id: str) -> gym.Env:
    """`env` with a Discrete or MultiDiscrete action space, or `EnvConfigError` naming the space."""
    action_space = env.action_space
    if _is_tuple_of(action_space, spaces.Discrete) and all(_starts_at_zero(part) for part in action_space.spaces):
        return _TupleToMultiDiscrete(env)
    one_row = isinstance(action_space, spaces.Discrete) or (
        isinstance(action_space, spaces.MultiDiscrete) and action_space.nvec.ndim == 1
    )
    if one_row and _starts_at_zero(action_space):
        return env
    raise EnvConfigError(f"env.id={env_id!r} has action space {action_space}; {SUPPORTED_ACTIONS}")


def _with_observations_checked(env: gym.Env, env_id: str) -> gym.Env:
    """`env` whose observations are float vectors, matrices made vectors, or images [C, H, W];
    Discrete observations one-hot. A multi-agent env's [D, O] rows stay as they are."""
    observation_space = env.observation_space
    if AGENTS in env.metadata:
        return env
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


def _make_single(env_id: str, kwargs: dict[str, Any]) -> Callable[[], gym.Env]:
    def make() -> gym.Env:
        env = gym.make(env_id, **kwargs)
        if _is_multi_agent(env):
            env.close()
            return _team_env(env_id, kwargs)  # made again, without the checker of one reward
        return _with_observations_checked(_with_actions_checked(env, env_id), env_id)

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
    """`num_envs` synchronous copies of `id` that record episode returns and lengths (the team's,
    for a multi-agent env).

    Copies reset themselves on the step *after* an episode ends (Gymnasium 1.x next-step
    autoreset): the transition of that step is not a real one, and the caller must drop it.

    Args:
        id: any Gymnasium id, e.g. "CartPole-v1", "Foraging-8x8-2p-2f-coop-v3", "mpe2/simple_spread_v3".
        num_envs: number of copies stepped together, >= 1.
        kwargs: keyword arguments for `gymnasium.make`.
    """
    check_env_id(id)
    factory = _make_single(id, dict(kwargs or {}))
    envs = SyncVectorEnv([factory] * num_envs, autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP)
    return RecordEpisodeStatistics(envs)


def env_shape(envs: gym.vector.VectorEnv) -> EnvShape:
    """Observation shape and action components of a vector env built by `make_vector_env`."""
    space = envs.single_action_space
    sizes = (int(space.n),) if isinstance(space, spaces.Discrete) else tuple(int(n) for n in space.nvec)
    return EnvShape(
        obs_shape=tuple(int(n) for n in envs.single_observation_space.shape),
        action_sizes=sizes,
        agents=AGENTS in envs.metadata,
    )


def env_actions(actions: torch.Tensor, envs: gym.vector.VectorEnv) -> np.ndarray:
    """Actions [N, D] int64 as `envs.step` takes them: [N] for a Discrete action space."""
    actions = actions.numpy()
    return actions[:, 0] if isinstance(envs.single_action_space, spaces.Discrete) else actions


def action_mask(info: dict[str, Any], num_envs: int, num_actions: int) -> torch.Tensor | None:
    """Allowed actions [N, 1, A] bool from a vector env's `info["action_mask"]` (e.g. Taxi-v4),
    or None when the env gives no mask. A copy whose info lacks the mask allows every action.
    (Masks are read for one-categorical envs; the padding of unequal components is the actor's.)"""
    if "action_mask" not in info:
        return None
    mask = torch.as_tensor(np.asarray(info["action_mask"], dtype=bool).reshape(num_envs, 1, num_actions))
    present = torch.as_tensor(np.asarray(info.get("_action_mask", np.ones(num_envs, dtype=bool))))
    return mask | ~present[:, None, None]


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
