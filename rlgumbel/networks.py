"""Networks: an actor that outputs logits, and twin critics in either form, each pair
evaluated in one batched pass; MLP encoders for vector observations and a small convolutional
encoder for image observations."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

ENCODERS = ("mlp", "cnn")
KERNEL = 3  # the convolutional encoder: one 3×3 convolution, stride 1, then ReLU (Young & Tian 2019)


def mlp(in_features: int, hidden_sizes: Sequence[int], out_features: int) -> nn.Sequential:
    """Linear layers with ReLU between them: in → hidden_sizes… → out."""
    sizes = [in_features, *hidden_sizes]
    layers: list[nn.Module] = []
    for fan_in, fan_out in itertools.pairwise(sizes):
        layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
    layers.append(nn.Linear(sizes[-1], out_features))
    return nn.Sequential(*layers)


def as_shape(obs_shape: int | Sequence[int]) -> tuple[int, ...]:
    """An observation shape as a tuple; a whole number n means vectors of n features."""
    return (obs_shape,) if isinstance(obs_shape, int) else tuple(obs_shape)


def check_encoder(encoder: str, obs_shape: Sequence[int]) -> None:
    """Raise ValueError unless `encoder` can read observations of `obs_shape`."""
    if encoder not in ENCODERS:
        raise ValueError(f"agent.encoder must be one of {list(ENCODERS)}, got {encoder!r}")
    if encoder == "cnn" and (len(obs_shape) != 3 or min(obs_shape[1:]) < KERNEL):
        raise ValueError(
            f"agent.encoder=cnn needs image observations [channels, height, width] of at least "
            f"{KERNEL}×{KERNEL}, but this env's observations have shape {list(obs_shape)}; use agent.encoder=mlp"
        )


def encoded_features(obs_shape: Sequence[int], encoder: str, channels: int) -> int:
    """Features the encoder outputs for one observation."""
    if encoder == "cnn":
        _, height, width = obs_shape
        return channels * (height - KERNEL + 1) * (width - KERNEL + 1)
    return math.prod(obs_shape)


class Actor(nn.Module):
    """obs [B, *obs_shape] → logits [B, A]: an encoder (flatten, or one convolution for images)
    then an MLP.

    Args:
        obs_shape: one observation's shape; [C, H, W] for `encoder="cnn"`.
        num_actions: A.
        hidden_sizes: widths of the MLP's hidden layers.
        encoder: "mlp" or "cnn".
        channels: output channels of the convolution (cnn only).
    """

    def __init__(
        self,
        obs_shape: int | Sequence[int],
        num_actions: int,
        hidden_sizes: Sequence[int],
        encoder: str = "mlp",
        channels: int = 16,
    ) -> None:
        super().__init__()
        obs_shape = as_shape(obs_shape)
        check_encoder(encoder, obs_shape)
        self.num_actions = num_actions
        torso = (
            nn.Sequential(nn.Conv2d(obs_shape[0], channels, KERNEL), nn.ReLU(), nn.Flatten())
            if encoder == "cnn"
            else nn.Flatten()
        )
        self.net = nn.Sequential(torso, mlp(encoded_features(obs_shape, encoder, channels), hidden_sizes, num_actions))

    def forward(self, obs: Tensor) -> Tensor:
        return self.net(obs)

    @torch.no_grad()
    def scale_initial_logits(self, scale: float) -> None:
        """Multiply the output layer's weights and bias by `scale`: below 1 the initial policy
        is closer to uniform, above 1 closer to a deterministic function of the state."""
        last = self.net[-1][-1]
        last.weight.mul_(scale)
        last.bias.mul_(scale)


class EnsembleEncoder(nn.Module):
    """The encoders of `size` ensemble members in one pass: obs [B, *obs_shape] → [E, B, F].

    "mlp" flattens (the members share the input); "cnn" runs the members' convolutions as one
    grouped convolution over the image repeated E times along its channels.
    """

    def __init__(self, size: int, obs_shape: int | Sequence[int], encoder: str = "mlp", channels: int = 16) -> None:
        super().__init__()
        obs_shape = as_shape(obs_shape)
        check_encoder(encoder, obs_shape)
        self.size = size
        self.features = encoded_features(obs_shape, encoder, channels)
        self.conv = nn.Conv2d(size * obs_shape[0], size * channels, KERNEL, groups=size) if encoder == "cnn" else None

    def forward(self, obs: Tensor) -> Tensor:
        batch = obs.shape[0]
        if self.conv is None:
            flat = obs.reshape(batch, -1)
            return flat.expand(self.size, *flat.shape)
        features = torch.relu(self.conv(obs.repeat(1, self.size, 1, 1)))  # [B, E·channels, H', W']
        return features.view(batch, self.size, -1).transpose(0, 1)


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
        for fan_in, fan_out in itertools.pairwise(sizes):
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


def ensemble_value(values: Tensor, pessimism: float) -> Tensor:
    """Q̂ from the ensemble members' values [E, …]: `mean_j Q_j − pessimism · mean_j |Q_j − mean|`.

    With two critics, pessimism 1 is their minimum (clipped double Q-learning, Fujimoto et al.
    2018), 0 their mean and −1 their maximum (optimism where the critics disagree, as in
    optimistic actor-critic, Ciosek et al. 2019). The mean absolute deviation, unlike the
    standard deviation, has a finite gradient where the members agree.
    """
    if values.shape[0] == 1:
        return values[0]
    if pessimism == 1.0 and values.shape[0] == 2:
        return values.amin(0)  # the same number, one operation
    mean = values.mean(0)
    return mean - pessimism * (values - mean).abs().mean(0)


class CriticValues:
    """Q(s, ·) of one batch of states under every critic of an ensemble.

    `all` and `of` give Q̂, the one action value that every selector, critic target and
    diagnostic uses, combined per action from the members (`ensemble_value`; with twin
    critics and pessimism 1, `Q̂(s, a) = min_j Q_j(s, a)`) at a one-hot action a. An action
    vector y off the vertices (a relaxed Gumbel-softmax sample) is valued by the critic's own
    extension of Q̂: linear for a q_head critic, `Q̂(s, y) = y · Q̂(s, ·)`; the critics' joint
    input for a concat critic, the members' `Q_j(s, y)` combined. Both agree with Q̂ at every
    one-hot action, so every selector estimates the gradient of one objective, `E_{a~π}[Q̂(s, a)]`.
    `of_each` and `all_each` return every member's values, for the critics' regression loss.
    """

    def __init__(self, critic: QHeadCritic | ConcatCritic, obs: Tensor) -> None:
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
        """Q̂(s, y), the members' Q_j(s, y) combined, for action vectors y [B, A]: [B]."""
        return ensemble_value(self.of_each(action), self.critic.pessimism)

    def all(self) -> Tensor:
        """Q̂(s, a) for every action a: [B, A]."""
        return ensemble_value(self.all_each(), self.critic.pessimism)


class _QHeadValues(CriticValues):
    """One forward pass serves every action vector: Q_j(s, y) = y · Q_j(s, ·)."""

    def of_each(self, action: Tensor) -> Tensor:
        return (self.all_each() * action).sum(-1)

    def of(self, action: Tensor) -> Tensor:
        """Q̂(s, y) = y · Q̂(s, ·), linear in y: [B]. (Not min_j (y · Q_j(s, ·)), which is
        concave in y and would give pathwise selectors another objective than the others.)"""
        return (self.all() * action).sum(-1)


class QHeadCritic(nn.Module):
    """Q-values of every action at once: obs [B, *obs_shape] → [E, B, A]; Q(s, y) = y · Q(s, ·).

    Args: as `Actor`, plus `ensemble`, the number of critics (2: twin critics), and
    `pessimism`, how their values combine into Q̂ (`ensemble_value`).
    """

    def __init__(
        self,
        obs_shape: int | Sequence[int],
        num_actions: int,
        hidden_sizes: Sequence[int],
        *,
        ensemble: int,
        pessimism: float,
        encoder: str = "mlp",
        channels: int = 16,
    ) -> None:
        super().__init__()
        self.ensemble, self.num_actions, self.pessimism = ensemble, num_actions, pessimism
        self.encoder = EnsembleEncoder(ensemble, obs_shape, encoder, channels)
        self.net = EnsembleMLP(ensemble, self.encoder.features, hidden_sizes, num_actions)

    def all_values(self, obs: Tensor) -> Tensor:
        """Q_j(s, a) for every member j and action a: [E, B, A]."""
        return self.net(self.encoder(obs))

    def values(self, obs: Tensor, action: Tensor) -> Tensor:
        """Q_j(s, y) for action vectors y [B, A]: [E, B]."""
        return (self.all_values(obs) * action).sum(-1)

    def bind(self, obs: Tensor) -> CriticValues:
        """Q(s, ·) for this batch of states."""
        return _QHeadValues(self, obs)


class ConcatCritic(nn.Module):
    """Q(s, y) of the encoded observation concatenated with an action vector:
    ([B, *obs_shape], [B, A]) → [E, B].

    Args: as `QHeadCritic`.
    """

    def __init__(
        self,
        obs_shape: int | Sequence[int],
        num_actions: int,
        hidden_sizes: Sequence[int],
        *,
        ensemble: int,
        pessimism: float,
        encoder: str = "mlp",
        channels: int = 16,
    ) -> None:
        super().__init__()
        self.ensemble, self.num_actions, self.pessimism = ensemble, num_actions, pessimism
        self.encoder = EnsembleEncoder(ensemble, obs_shape, encoder, channels)
        self.net = EnsembleMLP(ensemble, self.encoder.features + num_actions, hidden_sizes, 1)

    def _head(self, features: Tensor, action: Tensor) -> Tensor:
        inputs = torch.cat([features, action.expand(self.ensemble, *action.shape)], dim=-1)
        return self.net(inputs).squeeze(-1)

    def values(self, obs: Tensor, action: Tensor) -> Tensor:
        """Q_j(s, y) for action vectors y [B, A]: [E, B]."""
        return self._head(self.encoder(obs), action)

    def all_values(self, obs: Tensor) -> Tensor:
        """Q_j(s, a) for every member and one-hot action, in one batched pass: [E, B, A]."""
        batch, actions = obs.shape[0], self.num_actions
        features = self.encoder(obs).repeat_interleave(actions, dim=1)  # encoded once per state
        one_hots = torch.eye(actions, dtype=features.dtype, device=obs.device).repeat(batch, 1)
        return self._head(features, one_hots).view(self.ensemble, batch, actions)

    def bind(self, obs: Tensor) -> CriticValues:
        """Q(s, ·) for this batch of states, evaluated per action vector."""
        return CriticValues(self, obs)


CRITICS = {"q_head": QHeadCritic, "concat": ConcatCritic}
