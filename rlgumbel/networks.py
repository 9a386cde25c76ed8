"""Networks of a population of K agents, every network of every member evaluated in one batched
pass: an actor that outputs logits, and critic ensembles in either form; MLP encoders for vector
observations and a small convolutional encoder for image observations.

Every parameter stacks its networks along dim 0, member k's rows after member k − 1's, so that
member k can be initialised, saved and restored on its own (`init_member_`; `member_view` in
rlgumbel/agents/optimizers.py)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

ENCODERS = ("mlp", "cnn")
KERNEL = 3  # the convolutional encoder: one 3×3 convolution, stride 1, then ReLU (Young & Tian 2019)


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


def _uniform_rows_(param: Tensor, rows: slice, fan_in: int, generator: torch.Generator | None) -> None:
    """Draw `param[rows]` uniform in ±1/sqrt(fan_in), `nn.Linear`'s and `nn.Conv2d`'s default."""
    bound = 1.0 / math.sqrt(fan_in)
    with torch.no_grad():
        param[rows].uniform_(-bound, bound, generator=generator)


class EnsembleEncoder(nn.Module):
    """The encoders of `members` × `repeats` networks in one pass: obs [K, B, *obs_shape] →
    [K·repeats, B, F], member k's observations read by its `repeats` networks.

    "mlp" flattens; "cnn" is a 3×3 convolution (stride 1, then ReLU) per network, computed as
    one batched product of each network's filters with its image patches, so that a network's
    features are the same numbers whatever the population's size.
    """

    def __init__(
        self, members: int, repeats: int, obs_shape: int | Sequence[int], encoder: str = "mlp", channels: int = 16
    ) -> None:
        super().__init__()
        obs_shape = as_shape(obs_shape)
        check_encoder(encoder, obs_shape)
        self.members, self.repeats = members, repeats
        self.features = encoded_features(obs_shape, encoder, channels)
        self.filters = self.bias = None
        if encoder == "cnn":
            size, patch = members * repeats, obs_shape[0] * KERNEL * KERNEL
            self.filters = nn.Parameter(torch.empty(size, patch, channels))  # [S, C·3·3, channels]
            self.bias = nn.Parameter(torch.empty(size, 1, channels))
            self.init_member_(slice(None), None)

    def forward(self, obs: Tensor) -> Tensor:
        members, batch = obs.shape[:2]
        size = members * self.repeats
        if self.filters is None:
            flat = obs.reshape(members, 1, batch, -1)
            return flat.expand(members, self.repeats, batch, flat.shape[-1]).reshape(size, batch, -1)
        patches = F.unfold(obs.flatten(0, 1), KERNEL)  # [K·B, C·3·3, positions]
        patches = (
            patches.view(members, batch, *patches.shape[1:]).transpose(-1, -2).reshape(members, -1, patches.shape[1])
        )
        every = patches.unsqueeze(1).expand(members, self.repeats, *patches.shape[1:]).reshape(size, *patches.shape[1:])
        features = torch.relu(torch.baddbmm(self.bias, every, self.filters))  # [S, B·positions, channels]
        return features.view(size, batch, -1)

    def init_member_(self, member: int | slice, generator: torch.Generator | None) -> None:
        """Draw member `member`'s filters afresh (nothing to draw for "mlp")."""
        if self.filters is None:
            return
        rows = member if isinstance(member, slice) else slice(member * self.repeats, (member + 1) * self.repeats)
        fan_in = self.filters.shape[1]
        _uniform_rows_(self.filters, rows, fan_in, generator)
        _uniform_rows_(self.bias, rows, fan_in, generator)


class EnsembleMLP(nn.Module):
    """`size` independent MLPs evaluated with batched matrix products: [S, B, in] → [S, B, out].

    Each network is initialised like `nn.Linear` (uniform in ±1/sqrt(fan_in)); one `baddbmm`
    per layer replaces S separate layer calls, which is what small networks spend their time on.
    """

    def __init__(self, size: int, in_features: int, hidden_sizes: Sequence[int], out_features: int) -> None:
        super().__init__()
        sizes = [in_features, *hidden_sizes, out_features]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in itertools.pairwise(sizes):
            self.weights.append(nn.Parameter(torch.empty(size, fan_in, fan_out)))
            self.biases.append(nn.Parameter(torch.empty(size, 1, fan_out)))
        # the same Parameters as a plain list: indexing a ParameterList costs more than a layer here
        self._layers = list(zip(self.weights, self.biases))
        self.init_rows_(slice(None), None)

    def forward(self, x: Tensor) -> Tensor:
        last = len(self._layers) - 1
        for index, (weight, bias) in enumerate(self._layers):
            x = torch.baddbmm(bias, x, weight)
            if index < last:
                x = torch.relu(x)
        return x

    def init_rows_(self, rows: slice, generator: torch.Generator | None) -> None:
        """Draw networks `rows` afresh, layer by layer, weights before biases."""
        for weight, bias in self._layers:
            _uniform_rows_(weight, rows, weight.shape[1], generator)
            _uniform_rows_(bias, rows, weight.shape[1], generator)

    @torch.no_grad()
    def scale_output_rows_(self, rows: slice, scale: float) -> None:
        """Multiply the output layer's weights and bias of networks `rows` by `scale`."""
        self.weights[-1][rows] *= scale
        self.biases[-1][rows] *= scale


class Actor(nn.Module):
    """obs [K, B, *obs_shape] → logits [K, B, A] of K members' policies: an encoder (flatten, or
    one convolution for images) then an MLP.

    Args:
        members: K.
        obs_shape: one observation's shape; [C, H, W] for `encoder="cnn"`.
        num_actions: A.
        hidden_sizes: widths of the MLP's hidden layers.
        encoder: "mlp" or "cnn".
        channels: output channels of the convolution (cnn only).
    """

    def __init__(
        self,
        members: int,
        obs_shape: int | Sequence[int],
        num_actions: int,
        hidden_sizes: Sequence[int],
        encoder: str = "mlp",
        channels: int = 16,
    ) -> None:
        super().__init__()
        self.num_actions = num_actions
        self.encoder = EnsembleEncoder(members, 1, obs_shape, encoder, channels)
        self.net = EnsembleMLP(members, self.encoder.features, hidden_sizes, num_actions)

    def forward(self, obs: Tensor) -> Tensor:
        return self.net(self.encoder(obs))

    def init_member_(self, member: int, generator: torch.Generator | None, init_scale: float) -> None:
        """Draw member `member`'s parameters afresh; `init_scale` multiplies its output layer:
        below 1 the initial policy is closer to uniform, above 1 closer to deterministic."""
        self.encoder.init_member_(member, generator)
        rows = slice(member, member + 1)
        self.net.init_rows_(rows, generator)
        self.net.scale_output_rows_(rows, init_scale)


def ensemble_value(values: Tensor, pessimism: float) -> Tensor:
    """Q̂ from the ensemble's values [K, E, …] (members K, critics E): `mean_j Q_j − pessimism ·
    mean_j |Q_j − mean|` over the critics j, [K, …].

    With two critics, pessimism 1 is their minimum (clipped double Q-learning, Fujimoto et al.
    2018), 0 their mean and −1 their maximum (optimism where the critics disagree, as in
    optimistic actor-critic, Ciosek et al. 2019). The mean absolute deviation, unlike the
    standard deviation, has a finite gradient where the critics agree.
    """
    if values.shape[1] == 1:
        return values[:, 0]
    if pessimism == 1.0 and values.shape[1] == 2:
        return values.amin(1)  # the same number, one operation
    mean = values.mean(1)
    return mean - pessimism * (values - mean.unsqueeze(1)).abs().mean(1)


class CriticValues:
    """Q(s, ·) of one batch of states [K, B, …] under every critic of each member's ensemble.

    `all` and `of` give Q̂, the one action value that every selector, critic target and
    diagnostic uses, combined per action from the critics (`ensemble_value`; with twin
    critics and pessimism 1, `Q̂(s, a) = min_j Q_j(s, a)`) at a one-hot action a. An action
    vector y off the vertices (a relaxed Gumbel-softmax sample) is valued by the critic's own
    extension of Q̂: linear for a q_head critic, `Q̂(s, y) = y · Q̂(s, ·)`; the critics' joint
    input for a concat critic, the critics' `Q_j(s, y)` combined. Both agree with Q̂ at every
    one-hot action, so every selector estimates the gradient of one objective, `E_{a~π}[Q̂(s, a)]`.
    `of_each` and `all_each` return every critic's values, for the critics' regression loss.
    """

    def __init__(self, critic: QHeadCritic | ConcatCritic, obs: Tensor) -> None:
        self.critic, self.obs = critic, obs
        self._all_each: Tensor | None = None

    def all_each(self) -> Tensor:
        """Q_j(s, a) for every critic j and action a: [K, E, B, A] (computed once)."""
        if self._all_each is None:
            self._all_each = self.critic.all_values(self.obs)
        return self._all_each

    def of_each(self, action: Tensor) -> Tensor:
        """Q_j(s, y) for action vectors y [K, B, A]: [K, E, B]."""
        return self.critic.values(self.obs, action)

    def of(self, action: Tensor) -> Tensor:
        """Q̂(s, y), the critics' Q_j(s, y) combined, for action vectors y [K, B, A]: [K, B]."""
        return ensemble_value(self.of_each(action), self.critic.pessimism)

    def all(self) -> Tensor:
        """Q̂(s, a) for every action a: [K, B, A]."""
        return ensemble_value(self.all_each(), self.critic.pessimism)


class _QHeadValues(CriticValues):
    """One forward pass serves every action vector: Q_j(s, y) = y · Q_j(s, ·)."""

    def of_each(self, action: Tensor) -> Tensor:
        return (self.all_each() * action.unsqueeze(1)).sum(-1)

    def of(self, action: Tensor) -> Tensor:
        """Q̂(s, y) = y · Q̂(s, ·), linear in y: [K, B]. (Not min_j (y · Q_j(s, ·)), which is
        concave in y and would give pathwise selectors another objective than the others.)"""
        return (self.all() * action).sum(-1)


class _Critic(nn.Module):
    """What both critic forms share: K members' ensembles of E critics, each member's critics
    reading its own observations.

    Args: as `Actor`, plus `ensemble`, the number E of critics per member (2: twin critics),
    and `pessimism`, how their values combine into Q̂ (`ensemble_value`).
    """

    def __init__(
        self,
        members: int,
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
        self.members, self.ensemble, self.num_actions, self.pessimism = members, ensemble, num_actions, pessimism
        self.encoder = EnsembleEncoder(members, ensemble, obs_shape, encoder, channels)
        action_inputs, outputs = self._action_inputs_and_outputs(num_actions)
        self.net = EnsembleMLP(members * ensemble, self.encoder.features + action_inputs, hidden_sizes, outputs)

    @staticmethod
    def _action_inputs_and_outputs(num_actions: int) -> tuple[int, int]:
        raise NotImplementedError

    def init_member_(self, member: int, generator: torch.Generator | None) -> None:
        """Draw member `member`'s critics afresh."""
        self.encoder.init_member_(member, generator)
        self.net.init_rows_(slice(member * self.ensemble, (member + 1) * self.ensemble), generator)

    def _by_member(self, values: Tensor) -> Tensor:
        """[K·E, B, …] → [K, E, B, …]."""
        return values.view(self.members, self.ensemble, *values.shape[1:])


class QHeadCritic(_Critic):
    """Q-values of every action at once: obs [K, B, *obs_shape] → [K, E, B, A]; Q(s, y) = y · Q(s, ·)."""

    @staticmethod
    def _action_inputs_and_outputs(num_actions: int) -> tuple[int, int]:
        return 0, num_actions

    def all_values(self, obs: Tensor) -> Tensor:
        """Q_j(s, a) for every critic j and action a: [K, E, B, A]."""
        return self._by_member(self.net(self.encoder(obs)))

    def values(self, obs: Tensor, action: Tensor) -> Tensor:
        """Q_j(s, y) for action vectors y [K, B, A]: [K, E, B]."""
        return (self.all_values(obs) * action.unsqueeze(1)).sum(-1)

    def bind(self, obs: Tensor) -> CriticValues:
        """Q(s, ·) for this batch of states."""
        return _QHeadValues(self, obs)


class ConcatCritic(_Critic):
    """Q(s, y) of the encoded observation concatenated with an action vector:
    ([K, B, *obs_shape], [K, B, A]) → [K, E, B].

    Args: as `QHeadCritic`.
    """

    @staticmethod
    def _action_inputs_and_outputs(num_actions: int) -> tuple[int, int]:
        return num_actions, 1

    def _head(self, features: Tensor, action: Tensor) -> Tensor:
        """features [K·E, N, F], action vectors [K, N, A] → [K, E, N]."""
        members, rows = action.shape[:2]
        actions = action.unsqueeze(1).expand(members, self.ensemble, rows, action.shape[-1])
        inputs = torch.cat([features, actions.reshape(members * self.ensemble, rows, -1)], dim=-1)
        return self._by_member(self.net(inputs).squeeze(-1))

    def values(self, obs: Tensor, action: Tensor) -> Tensor:
        """Q_j(s, y) for action vectors y [K, B, A]: [K, E, B]."""
        return self._head(self.encoder(obs), action)

    def all_values(self, obs: Tensor) -> Tensor:
        """Q_j(s, a) for every critic and one-hot action, in one batched pass: [K, E, B, A]."""
        members, batch, actions = obs.shape[0], obs.shape[1], self.num_actions
        features = self.encoder(obs).repeat_interleave(actions, dim=1)  # encoded once per state
        one_hots = torch.eye(actions, dtype=features.dtype, device=obs.device).repeat(batch, 1)
        values = self._head(features, one_hots.expand(members, *one_hots.shape))
        return values.view(members, self.ensemble, batch, actions)

    def bind(self, obs: Tensor) -> CriticValues:
        """Q(s, ·) for this batch of states, evaluated per action vector."""
        return CriticValues(self, obs)


CRITICS = {"q_head": QHeadCritic, "concat": ConcatCritic}
