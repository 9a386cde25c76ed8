"""Replay buffer: preallocated torch tensors in a ring of vector-env steps, sampled uniformly,
with n-step windows read off the stored trajectories."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Batch:
    """A batch of transitions, each the first step of a window of up to n steps of one episode.

    Attributes:
        obs: [B, *obs_shape] the state the window starts in.
        action: [B] int64, the action taken there.
        reward: [B, n] the rewards of the window's steps; 0 past its last step.
        next_obs: [B, *obs_shape] the state after the window's last step.
        terminated: [B] float, 1.0 if the episode reached a terminal state at the window's last
            step (not at a time limit): nothing is bootstrapped from `next_obs` then.
        steps: [B] int64, how many steps the window has (1 … n); it ends early where the
            episode ends or the stored trajectory does.
        mask, next_mask: [B, A] bool allowed actions at `obs` and `next_obs`, for envs with
            action masks; None otherwise.
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
    """A `Batch` of single transitions: reward [B] becomes a window of one step."""
    steps = torch.ones(reward.shape[0], dtype=torch.int64, device=reward.device)
    return Batch(obs, action, reward.unsqueeze(-1), next_obs, terminated, steps, mask, next_mask)


class ReplayBuffer:
    """A ring of the last `capacity` transitions of a vector env, as preallocated tensors.

    Storage is time-major, [rows, num_envs, …], one row per vector step, so that each env copy's
    trajectory is a column and an n-step window is a few consecutive rows of it. A row holds a
    transition for every copy; a copy's transition on the step right after its episode ended
    (Gymnasium's next-step autoreset: the action is ignored and the env resets) is stored as
    invalid and never sampled.

    Args:
        capacity: transitions kept (rounded up to a whole number of vector steps); older rows
            are overwritten.
        obs_shape: the shape of one observation.
        num_envs: copies of the vector env, transitions per row.
        num_actions: if given, the allowed-action masks of obs and next_obs are stored too.
    """

    def __init__(self, capacity: int, obs_shape: Sequence[int], num_envs: int, num_actions: int | None = None) -> None:
        self.num_envs = num_envs
        self.rows = math.ceil(capacity / num_envs)
        self.capacity = self.rows * num_envs
        shape = (self.rows, num_envs)
        self.obs = torch.zeros(*shape, *obs_shape)
        self.next_obs = torch.zeros(*shape, *obs_shape)
        self.action = torch.zeros(shape, dtype=torch.int64)
        self.reward = torch.zeros(shape)
        self.terminated = torch.zeros(shape, dtype=torch.bool)
        self.done = torch.zeros(shape, dtype=torch.bool)  # terminated or truncated
        self.valid = torch.zeros(shape, dtype=torch.bool)
        masks = (*shape, num_actions) if num_actions else (0, 0, 0)
        self.mask = torch.ones(masks, dtype=torch.bool)
        self.next_mask = torch.ones(masks, dtype=torch.bool)
        self.masked = bool(num_actions)
        self.position = 0  # next row to write
        self.filled = 0  # rows written, up to `rows`
        self.size = 0  # valid transitions stored

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
        """Store one vector step: a transition for each of the N copies.

        Args:
            obs, next_obs: [N, *obs_shape]; action: [N] int64; reward: [N].
            terminated, truncated: [N] bool, how the episode ended at this step, if it did.
            valid: [N] bool; false for a copy's reset step after its episode ended.
            mask, next_mask: [N, A] bool allowed actions, for a buffer made with `num_actions`.
        """
        row = self.position
        self.size += int(valid.sum()) - int(self.valid[row].sum())
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

    def _sample_valid(self, batch_size: int, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """Uniform (row, env) pairs among the valid transitions, by redrawing invalid ones."""
        flat = torch.randint(self.filled * self.num_envs, (batch_size,), generator=generator, device=self.obs.device)
        invalid = ~self.valid.view(-1)[flat]
        while bool(invalid.any()):
            redraw = torch.randint(
                self.filled * self.num_envs, (int(invalid.sum()),), generator=generator, device=self.obs.device
            )
            flat[invalid] = redraw
            invalid = ~self.valid.view(-1)[flat]
        return flat // self.num_envs, flat % self.num_envs

    def sample(self, batch_size: int, generator: torch.Generator | None, horizon: int = 1) -> Batch:
        """Uniformly sample `batch_size` stored transitions (with replacement), each with the
        window of up to `horizon` steps that follows it in its episode.

        A window stops after the step where its episode ended (terminated or truncated) and at
        the newest stored step, so `steps` can be below `horizon`.
        """
        if self.size == 0:
            raise RuntimeError("cannot sample from an empty replay buffer")
        row, env = self._sample_valid(batch_size, generator)
        offsets = torch.arange(horizon, device=row.device)
        rows = (row.unsqueeze(-1) + offsets) % self.rows  # [B, n]
        stored_after = (self.position - row - 1) % self.rows + 1  # rows from `row` to the newest
        envs = env.unsqueeze(-1).expand_as(rows)
        done = self.done[rows, envs]
        # Step i is in the window if it is stored and no earlier step of the window ended the episode.
        ended_before = torch.cumsum(done, -1) - done.long() > 0
        inside = (offsets < stored_after.unsqueeze(-1)) & ~ended_before
        steps = inside.sum(-1)
        last = rows.gather(-1, (steps - 1).unsqueeze(-1)).squeeze(-1)
        masks = (self.mask[row, env], self.next_mask[last, env]) if self.masked else (None, None)
        return Batch(
            self.obs[row, env],
            self.action[row, env],
            self.reward[rows, envs] * inside,
            self.next_obs[last, env],
            self.terminated[last, env].float(),
            steps,
            *masks,
        )

    def state_dict(self) -> dict[str, Tensor | int]:
        """The stored rows and ring position, for checkpoints."""
        names = ("obs", "next_obs", "action", "reward", "terminated", "done", "valid") + (
            ("mask", "next_mask") if self.masked else ()
        )
        return {
            **{name: getattr(self, name)[: self.filled].clone() for name in names},
            "position": self.position,
            "filled": self.filled,
            "size": self.size,
        }

    def load_state_dict(self, state: dict[str, Tensor | int]) -> None:
        """Restore what `state_dict` returned."""
        filled = int(state["filled"])
        if filled > self.rows or state["obs"].shape[1:2] != (self.num_envs,):
            raise ValueError(
                f"checkpoint holds {filled} rows of {state['obs'].shape[1]} transitions; this buffer "
                f"has {self.rows} rows of {self.num_envs} (trainer.buffer_size, env.num_envs)"
            )
        for name, value in state.items():
            if isinstance(value, Tensor):
                getattr(self, name)[:filled] = value
        self.position, self.filled, self.size = int(state["position"]), filled, int(state["size"])
