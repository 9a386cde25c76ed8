"""Observation normalisation: running mean and variance of what the env shows, applied to the
networks' inputs."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


class ObservationNormalizer(nn.Module):
    """Standardises observations by their running mean and variance, clipped to ±`clip`.

    The statistics are updated from every batch of observations the agent collects (the
    parallel form of Welford's update, Chan et al. 1979) and stored as buffers, so they are
    part of the agent's checkpoint. Inputs are `(obs − mean) / sqrt(var + 1e-8)`, as in
    Stable-Baselines3's VecNormalize; features that never vary pass through unscaled.

    Args:
        obs_shape: one observation's shape.
        clip: bound of the standardised values (> 0).
    """

    def __init__(self, obs_shape: Sequence[int], clip: float = 10.0) -> None:
        super().__init__()
        self.clip = clip
        self.register_buffer("mean", torch.zeros(obs_shape))
        self.register_buffer("var", torch.ones(obs_shape))
        self.register_buffer("count", torch.zeros(()))

    @torch.no_grad()
    def update(self, obs: Tensor) -> None:
        """Fold a batch of observations [N, *obs_shape] into the running statistics."""
        batch = obs.shape[0]
        batch_mean = obs.mean(0)
        batch_var = obs.var(0, unbiased=False)
        total = self.count + batch
        delta = batch_mean - self.mean
        self.mean += delta * (batch / total)
        self.var.copy_(
            (self.var * self.count + batch_var * batch + delta.square() * (self.count * batch / total)) / total
        )
        self.count.copy_(total)

    def forward(self, obs: Tensor) -> Tensor:
        return ((obs - self.mean) / (self.var + 1e-8).sqrt()).clamp(-self.clip, self.clip)
