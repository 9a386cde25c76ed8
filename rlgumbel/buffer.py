"""Replay buffer: preallocated torch tensors in a ring, sampled uniformly."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Batch:
    """A batch of transitions: obs [B, D], action [B] int64, reward [B], next_obs [B, D],
    terminated [B] float (1.0 where the episode ended in a terminal state, not a time limit),
    and for envs with action masks the allowed actions mask, next_mask [B, A] bool."""

    obs: Tensor
    action: Tensor
    reward: Tensor
    next_obs: Tensor
    terminated: Tensor
    mask: Tensor | None = None
    next_mask: Tensor | None = None


class ReplayBuffer:
    """A fixed-capacity ring of transitions stored as preallocated tensors.

    Args:
        capacity: number of transitions kept; older ones are overwritten.
        obs_dim: observation features.
        device: where the tensors live.
        num_actions: if given, the allowed-action masks of obs and next_obs are stored too.
    """

    def __init__(self, capacity: int, obs_dim: int, device: torch.device | str = "cpu",
                 num_actions: int | None = None) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"trainer.buffer_size must be a whole number >= 1, got {capacity!r}")
        self.capacity = capacity
        self.obs = torch.zeros(capacity, obs_dim, device=device)
        self.next_obs = torch.zeros(capacity, obs_dim, device=device)
        self.action = torch.zeros(capacity, dtype=torch.int64, device=device)
        self.reward = torch.zeros(capacity, device=device)
        self.terminated = torch.zeros(capacity, device=device)
        masks = (capacity, num_actions) if num_actions else (0, 0)
        self.mask = torch.ones(masks, dtype=torch.bool, device=device)
        self.next_mask = torch.ones(masks, dtype=torch.bool, device=device)
        self.masked = bool(num_actions)
        self.position = 0  # next slot to write
        self.size = 0

    def add(self, obs: Tensor, action: Tensor, reward: Tensor, next_obs: Tensor,
            terminated: Tensor, valid: Tensor | None = None, mask: Tensor | None = None,
            next_mask: Tensor | None = None) -> None:
        """Store a batch of N transitions, keeping only rows where `valid` is true.

        Args:
            obs, next_obs: [N, D]; action: [N] int64; reward, terminated: [N].
            valid: [N] bool; false rows (e.g. autoreset steps) are dropped.
            mask, next_mask: [N, A] bool allowed actions, for a buffer made with `num_actions`.
        """
        rows = [obs, action, reward, next_obs, terminated, mask, next_mask]
        if valid is not None and not bool(valid.all()):
            rows = [None if x is None else x[valid] for x in rows]
        obs, action, reward, next_obs, terminated, mask, next_mask = rows
        count = obs.shape[0]
        if count == 0:
            return
        slots = (self.position + torch.arange(count, device=self.obs.device)) % self.capacity
        self.obs[slots] = obs
        self.action[slots] = action
        self.reward[slots] = reward
        self.next_obs[slots] = next_obs
        self.terminated[slots] = terminated
        if self.masked:
            self.mask[slots] = mask
            self.next_mask[slots] = next_mask
        self.position = (self.position + count) % self.capacity
        self.size = min(self.size + count, self.capacity)

    def sample(self, batch_size: int, generator: torch.Generator | None) -> Batch:
        """Uniformly sample `batch_size` stored transitions (with replacement)."""
        if self.size == 0:
            raise RuntimeError("cannot sample from an empty replay buffer")
        index = torch.randint(self.size, (batch_size,), generator=generator, device=self.obs.device)
        masks = (self.mask[index], self.next_mask[index]) if self.masked else (None, None)
        return Batch(self.obs[index], self.action[index], self.reward[index],
                     self.next_obs[index], self.terminated[index], *masks)

    def state_dict(self) -> dict[str, Tensor | int]:
        """The stored transitions and ring position, for checkpoints."""
        return {"obs": self.obs[: self.size].clone(), "next_obs": self.next_obs[: self.size].clone(),
                "action": self.action[: self.size].clone(), "reward": self.reward[: self.size].clone(),
                "terminated": self.terminated[: self.size].clone(),
                "mask": self.mask[: self.size].clone(), "next_mask": self.next_mask[: self.size].clone(),
                "position": self.position, "size": self.size}

    def load_state_dict(self, state: dict[str, Tensor | int]) -> None:
        """Restore what `state_dict` returned."""
        size = int(state["size"])
        if size > self.capacity:
            raise ValueError(f"checkpoint holds {size} transitions, more than trainer.buffer_size={self.capacity}")
        for name in ("obs", "next_obs", "action", "reward", "terminated") + (("mask", "next_mask") if self.masked else ()):
            getattr(self, name)[:size] = state[name]
        self.position, self.size = int(state["position"]), size
