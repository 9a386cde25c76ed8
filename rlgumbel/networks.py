"""Networks: an MLP actor that outputs logits, and twin critics in either form, each pair
evaluated in one batched pass."""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn


def mlp(in_features: int, hidden_sizes: Sequence[int], out_features: int) -> nn.Sequential:
    """Linear layers with ReLU between them: in → hidden_sizes… → out."""
    sizes = [in_features, *hidden_sizes]
    layers: list[nn.Module] = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
    layers.append(nn.Linear(sizes[-1], out_features))
    return nn.Sequential(*layers)


class Actor(nn.Module):
    """obs [B, D] → logits [B, A]."""

    def __init__(self, obs_dim: int, num_actions: int, hidden_sizes: Sequence[int]) -> None:
        super().__init__()
        self.num_actions = num_actions
        self.net = mlp(obs_dim, hidden_sizes, num_actions)

    def forward(self, obs: Tensor) -> Tensor:
        return self.net(obs)


class EnsembleMLP(nn.Module):
    """`size` independent MLPs evaluated with batched matrix products: [E, B, in] → [E, B, out].

    Each member is initialised like `nn.Linear` (uniform in ±1/sqrt(fan_in)); one `baddbmm`
    per layer replaces E separate layer calls, which is what small critics spend their time on.
    """

    def __init__(self, size: int, in_features: int, hidden_sizes: Sequence[int], out_features: int) -> None:
        super().__init__()
        sizes = [in_features, *hidden_sizes, out_features]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
            bound = 1.0 / math.sqrt(fan_in)
            self.weights.append(nn.Parameter(torch.empty(size, fan_in, fan_out).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(size, 1, fan_out).uniform_(-bound, bound)))

    def forward(self, x: Tensor) -> Tensor:
        last = len(self.weights) - 1
        for index, (weight, bias) in enumerate(zip(self.weights, self.biases)):
            x = torch.baddbmm(bias, x, weight)
            if index < last:
                x = torch.relu(x)
        return x


class CriticValues:
    """Q(s, ·) of one batch of states under every critic of an ensemble.

    `all` and `of` give Q̂, the one action value that every selector, critic target and
    diagnostic uses: the per-action minimum over the ensemble (Fujimoto et al. 2018),
    `Q̂(s, a) = min_j Q_j(s, a)` at a one-hot action a. An action vector y off the vertices
    (a relaxed Gumbel-softmax sample) is valued by the critic's own extension of Q̂: linear for
    a q_head critic, `Q̂(s, y) = y · min_j Q_j(s, ·)`; the critics' joint input for a concat
    critic, `min_j Q_j(s, y)`. Both agree with Q̂ at every one-hot action, so every selector
    estimates the gradient of one objective, `E_{a~π}[Q̂(s, a)]`.
    `of_each` and `all_each` return every member's values, for the critics' regression loss.
    """

    def __init__(self, critic: "QHeadCritic | ConcatCritic", obs: Tensor) -> None:
        self.critic, self.obs = critic, obs
        self._all_each: Tensor | None = None

    def all_each(self) -> Tensor:
        """Q_j(s, a) for every member j and action a: [E, B, A] (computed once)."""
        if self._all_each is None:
            self._all_each = self.critic.all_values(self.obs)
        return self._all_each

    def of_each(self, action: Tensor) -> Tensor:
        """Q_j(s, y) for action vectors y [B, A]: [E, B]."""
        return self.critic.values(self.obs, action)

    def of(self, action: Tensor) -> Tensor:
        """Q̂(s, y) = min_j Q_j(s, y) for action vectors y [B, A]: [B]."""
        return self.of_each(action).amin(0)

    def all(self) -> Tensor:
        """min_j Q_j(s, a) for every action a: [B, A]."""
        return self.all_each().amin(0)


class _QHeadValues(CriticValues):
    """One forward pass serves every action vector: Q_j(s, y) = y · Q_j(s, ·)."""

    def of_each(self, action: Tensor) -> Tensor:
        return (self.all_each() * action).sum(-1)

    def of(self, action: Tensor) -> Tensor:
        """Q̂(s, y) = y · min_j Q_j(s, ·), linear in y: [B]. (Not min_j (y · Q_j(s, ·)), which is
        concave in y and would give pathwise selectors another objective than the others.)"""
        return (self.all() * action).sum(-1)


class QHeadCritic(nn.Module):
    """Q-values of every action at once: obs [B, D] → [E, B, A]; Q(s, y) = y · Q(s, ·)."""

    def __init__(self, obs_dim: int, num_actions: int, hidden_sizes: Sequence[int], ensemble: int = 2) -> None:
        super().__init__()
        self.ensemble, self.num_actions = ensemble, num_actions
        self.net = EnsembleMLP(ensemble, obs_dim, hidden_sizes, num_actions)

    def all_values(self, obs: Tensor) -> Tensor:
        """Q_j(s, a) for every member j and action a: [E, B, A]."""
        return self.net(obs.expand(self.ensemble, *obs.shape))

    def values(self, obs: Tensor, action: Tensor) -> Tensor:
        """Q_j(s, y) for action vectors y [B, A]: [E, B]."""
        return (self.all_values(obs) * action).sum(-1)

    def bind(self, obs: Tensor) -> CriticValues:
        """Q(s, ·) for this batch of states."""
        return _QHeadValues(self, obs)


class ConcatCritic(nn.Module):
    """Q(s, y) of the observation concatenated with an action vector: ([B, D], [B, A]) → [E, B]."""

    def __init__(self, obs_dim: int, num_actions: int, hidden_sizes: Sequence[int], ensemble: int = 2) -> None:
        super().__init__()
        self.ensemble, self.num_actions = ensemble, num_actions
        self.net = EnsembleMLP(ensemble, obs_dim + num_actions, hidden_sizes, 1)

    def values(self, obs: Tensor, action: Tensor) -> Tensor:
        """Q_j(s, y) for action vectors y [B, A]: [E, B]."""
        inputs = torch.cat([obs, action], dim=-1)
        return self.net(inputs.expand(self.ensemble, *inputs.shape)).squeeze(-1)

    def all_values(self, obs: Tensor) -> Tensor:
        """Q_j(s, a) for every member and one-hot action, in one batched pass: [E, B, A]."""
        batch, actions = obs.shape[0], self.num_actions
        one_hots = torch.eye(actions, dtype=obs.dtype, device=obs.device).repeat(batch, 1)
        return self.values(obs.repeat_interleave(actions, dim=0), one_hots).view(self.ensemble, batch, actions)

    def bind(self, obs: Tensor) -> CriticValues:
        """Q(s, ·) for this batch of states, evaluated per action vector."""
        return CriticValues(self, obs)


CRITICS = {"q_head": QHeadCritic, "concat": ConcatCritic}
