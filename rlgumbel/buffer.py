"""Replay buffer: preallocated torch tensors in a ring of vector-env steps of every member of a
population, sampled uniformly per member, with n-step windows read off the stored trajectories."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from rlgumbel.generators import Generator, member_generator, randint


@dataclass(frozen=True)
class Batch:
    """A batch of transitions, each the first step of a window of up to n steps of one episode.

    Shapes are those of one member's batch; a population's have its members first ([K, B, …]).

    Attributes:
        obs: [B, *obs_shape] the state the window starts in.
        action: [B, *action_shape] int64, the action taken there ([B, D]: one choice per component).
        reward: [B, n] the rewards of the window's steps; 0 past its last step.
        next_obs: [B, *obs_shape] the state after the window's last step.
        terminated: [B] float, 1.0 if the episode reached a terminal state at the window's last
            step (not at a time limit): nothing is bootstrapped from `next_obs` then.
        steps: [B] int64, how many steps the window has (1 … n); it ends early where the
            episode ends or the stored trajectory does.
        mask, next_mask: [B, *action_shape, A] bool allowed actions at `obs` and `next_obs`,
            for envs with action masks; None otherwise.
    """

    obs: Tensor
    action: Tensor
    reward: Tensor
    next_obs: Tensor
    terminated: Tensor
    steps: Tensor
    mask: Tensor | None = None
    next_mask: Tensor | None = None


def one_step_batch(
    obs: Tensor,
    action: Tensor,
    reward: Tensor,
    next_obs: Tensor,
    terminated: Tensor,
    mask: Tensor | None = None,
    next_mask: Tensor | None = None,
) -> Batch:
    """A `Batch` of single transitions: reward [B] (or [K, B]) becomes a window of one step."""
    steps = torch.ones(reward.shape, dtype=torch.int64, device=reward.device)
    return Batch(obs, action, reward.unsqueeze(-1), next_obs, terminated, steps, mask, next_mask)


class ReplayBuffer:
    """A ring of each member's last `capacity` transitions of its vector env, as preallocated tensors.

    Storage is time-major, [rows, K, num_envs, …], one row per vector step of the K members'
    envs, so that each env copy's trajectory is a column and an n-step window is a few
    consecutive rows of it. A row holds a transition for every copy; a copy's transition on the
    step right after its episode ended (Gymnasium's next-step autoreset: the action is ignored
    and the env resets) is stored as invalid and never sampled. Each member samples only its own
    transitions, with its own generator.

    Args:
        capacity: transitions kept per member (rounded up to a whole number of vector steps);
            older rows are overwritten.
        obs_shape: the shape of one observation.
        num_envs: copies of each member's vector env, transitions per member and row.
        num_actions: if given, the allowed-action masks of obs and next_obs are stored too,
            [*action_shape, num_actions] per transition.
        members: K, members of the population.
        action_shape: the shape of one action: () for one whole number, (D,) for D components.
    """

    def __init__(
        self,
        capacity: int,
        obs_shape: Sequence[int],
        num_envs: int,
        num_actions: int | None = None,
        members: int = 1,
        action_shape: Sequence[int] = (),
    ) -> None:
        self.num_envs, self.members = num_envs, members
        self.rows = math.ceil(capacity / num_envs)
        self.capacity = self.rows * num_envs
        shape = (self.rows, members, num_envs)
        self.obs = torch.zeros(*shape, *obs_shape)
        self.next_obs = torch.zeros(*shape, *obs_shape)
        self.action = torch.zeros(*shape, *action_shape, dtype=torch.int64)
        self.reward = torch.zeros(shape)
        self.terminated = torch.zeros(shape, dtype=torch.bool)
        self.done = torch.zeros(shape, dtype=torch.bool)  # terminated or truncated
        self.valid = torch.zeros(shape, dtype=torch.bool)
        masks = (*shape, *action_shape, num_actions) if num_actions else (0, 0, 0, 0)
        self.mask = torch.ones(masks, dtype=torch.bool)
        self.next_mask = torch.ones(masks, dtype=torch.bool)
        self.masked = bool(num_actions)
        self.position = 0  # next row to write
        self.filled = 0  # rows written, up to `rows`
        self.size = torch.zeros(members, dtype=torch.int64)  # valid transitions stored, per member
        self._member = torch.arange(members).view(members, 1)

    def add(
        self,
        obs: Tensor,
        action: Tensor,
        reward: Tensor,
        next_obs: Tensor,
        terminated: Tensor,
        truncated: Tensor,
        valid: Tensor,
        mask: Tensor | None = None,
        next_mask: Tensor | None = None,
    ) -> None:
        """Store one vector step of every member: a transition for each of the K × N copies.

        Args:
            obs, next_obs: [K, N, *obs_shape]; action: [K, N, *action_shape] int64; reward: [K, N].
            terminated, truncated: [K, N] bool, how the episode ended at this step, if it did.
            valid: [K, N] bool; false for a copy's reset step after its episode ended.
            mask, next_mask: [K, N, *action_shape, A] bool allowed actions, for a buffer made
                with `num_actions`.
        """
        row = self.position
        self.size += valid.sum(-1) - self.valid[row].sum(-1)
        self.obs[row] = obs
        self.next_obs[row] = next_obs
        self.action[row] = action
        self.reward[row] = reward
        self.terminated[row] = terminated
        self.done[row] = terminated | truncated
        self.valid[row] = valid
        if self.masked:
            self.mask[row] = mask
            self.next_mask[row] = next_mask
        self.position = (row + 1) % self.rows
        self.filled = min(self.filled + 1, self.rows)

    def _index(self, row: Tensor, env: Tensor) -> Tensor:
        """Positions in the flattened storage [rows · K · N] of each member's (row, env) pairs [K, …]."""
        member = self._member.view(self.members, *[1] * (row.dim() - 1))
        return (row * self.members + member) * self.num_envs + env

    def _sample_valid(self, batch_size: int, generator: Generator) -> tuple[Tensor, Tensor]:
        """Uniform (row, env) pairs [K, B] among each member's valid transitions, by redrawing
        invalid ones from that member's generator."""
        high = self.filled * self.num_envs
        flat = randint(high, (self.members, batch_size), generator, self.obs.device)
        valid = self.valid.view(-1)
        invalid = ~valid[self._index(flat // self.num_envs, flat % self.num_envs)]
        while bool(invalid.any()):
            # each member redraws its invalid ones from its own generator; the mask orders them
            # member by member, as the draws are concatenated
            counts = invalid.sum(-1).tolist()
            flat[invalid] = torch.cat(
                [
                    torch.randint(high, (count,), generator=member_generator(generator, member), device=flat.device)
                    for member, count in enumerate(counts)
                    if count
                ]
            )
            invalid = ~valid[self._index(flat // self.num_envs, flat % self.num_envs)]
        return flat // self.num_envs, flat % self.num_envs

    def sample(self, batch_size: int, generator: Generator, horizon: int = 1) -> Batch:
        """Uniformly sample `batch_size` stored transitions per member (with replacement), each
        with the window of up to `horizon` steps that follows it in its episode: a `Batch` of [K, B, …].

        A window stops after the step where its episode ended (terminated or truncated) and at
        the newest stored step, so `steps` can be below `horizon`.
        """
        if bool((self.size == 0).any()):
            raise RuntimeError("cannot sample from an empty replay buffer")
        row, env = self._sample_valid(batch_size, generator)  # [K, B]
        offsets = torch.arange(horizon, device=row.device)
        rows = (row.unsqueeze(-1) + offsets) % self.rows  # [K, B, n]
        stored_after = (self.position - row - 1) % self.rows + 1  # rows from `row` to the newest
        window = self._index(rows, env.unsqueeze(-1))
        done = self.done.view(-1)[window]
        # Step i is in the window if it is stored and no earlier step of the window ended the episode.
        ended_before = torch.cumsum(done, -1) - done.long() > 0
        inside = (offsets < stored_after.unsqueeze(-1)) & ~ended_before
        steps = inside.sum(-1)
        first, last = window[..., 0], window.gather(-1, (steps - 1).unsqueeze(-1)).squeeze(-1)
        masks = (_at(self.mask, first), _at(self.next_mask, last)) if self.masked else (None, None)
        return Batch(
            _at(self.obs, first),
            _at(self.action, first),
            _at(self.reward, window) * inside,
            _at(self.next_obs, last),
            _at(self.terminated, last).float(),
            steps,
            *masks,
        )

    def _names(self) -> tuple[str, ...]:
        return ("obs", "next_obs", "action", "reward", "terminated", "done", "valid") + (
            ("mask", "next_mask") if self.masked else ()
        )

    def member_state(self, member: int) -> dict[str, Tensor | int]:
        """Member `member`'s stored rows and the ring position, as a buffer of one member stores
        them (rows [filled, num_envs, …]), for checkpoints."""
        return {
            **{name: getattr(self, name)[: self.filled, member].clone() for name in self._names()},
            "position": self.position,
            "filled": self.filled,
            "size": int(self.size[member]),
        }

    def load_member_state(self, member: int, state: dict[str, Tensor | int]) -> None:
        """Restore what `member_state` returned into member `member`."""
        filled = int(state["filled"])
        if filled > self.rows or state["obs"].shape[1:2] != (self.num_envs,):
            raise ValueError(
                f"checkpoint holds {filled} rows of {state['obs'].shape[1]} transitions; this buffer "
                f"has {self.rows} rows of {self.num_envs} (trainer.buffer_size, env.num_envs)"
            )
        for name in self._names():
            mine = getattr(self, name)[:filled, member]
            # reshape: checkpoints from before actions had components ([filled, N] actions)
            mine.copy_(state[name].reshape(mine.shape))
        self.position, self.filled = int(state["position"]), filled
        self.size[member] = int(state["size"])

    def state_dict(self) -> dict[str, Tensor | int]:
        """The state of a buffer of one member, for checkpoints."""
        return self.member_state(0)

    def load_state_dict(self, state: dict[str, Tensor | int]) -> None:
        """Restore what `state_dict` returned."""
        self.load_member_state(0, state)


def _at(storage: Tensor, index: Tensor) -> Tensor:
    """The entries of `storage` [rows, K, N, …] at flat positions `index` (`ReplayBuffer._index`): [*index.shape, …]."""
    entries = storage.view(-1, *storage.shape[3:]).index_select(0, index.reshape(-1))
    return entries.view(*index.shape, *storage.shape[3:])
