"""Observation normalisation: running mean and variance of what the env shows, applied to the
networks' inputs."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


class ObservationNormalizer(nn.Module):
    """Standardises each member's observations by its own running mean and variance, clipped to ±`clip`.

    The statistics are updated from every batch of observations the agent collects (the
    parallel form of Welford's update, Chan et al. 1979) and stored as buffers, so they are
    part of the agent's checkpoint. Inputs are `(obs − mean) / sqrt(var + 1e-8)`, as in
    Stable-Baselines3's VecNormalize; features that never vary pass through unscaled.

    Args:
        members: K, members of the population.
        obs_shape: one observation's shape.
        clip: bound of the standardised values (> 0).
    """

    def __init__(self, members: int, obs_shape: Sequence[int], clip: float = 10.0) -> None:
        super().__init__()
        self.clip = clip
        self.register_buffer("mean", torch.zeros(members, *obs_shape))
        self.register_buffer("var", torch.ones(members, *obs_shape))
        self.register_buffer("count", torch.zeros(members, *[1] * len(obs_shape)))

    @torch.no_grad()
    def update(self, obs: Tensor) -> None:
        """Fold each member's batch of observations [K, N, *obs_shape] into its running statistics."""
        batch = obs.shape[1]
        batch_mean = obs.mean(1)
        batch_var = obs.var(1, unbiased=False)
        total = self.count + batch
        delta = batch_mean - self.mean
        self.mean += delta * (batch / total)
        self.var.copy_(
            (self.var * self.count + batch_var * batch + delta.square() * (self.count * batch / total)) / total
        )
        self.count.copy_(total)

    def forward(self, obs: Tensor) -> Tensor:
        """obs [K, B, *obs_shape], standardised by member."""
        mean, var = self.mean.unsqueeze(1), self.var.unsqueeze(1)
        return ((obs - mean) / (var + 1e-8).sqrt()).clamp(-self.clip, self.clip)
