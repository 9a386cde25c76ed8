"""Networks of a population of K agents, every network of every member evaluated in one batched
pass: an actor that outputs logits, and critic ensembles in either form; MLP encoders for vector
observations and a small convolutional encoder for image observations.

Actions have D components of A choices each ([K, B, D, A] logits and action vectors; D = 1 is one
categorical). In a multi-agent env (observations [K, B, D, O], one row per agent) each agent's
logits come from its own row, and a critic is centralised (it reads every row and every agent's
action vector; Lowe et al. 2017) or independent (agent d's critic reads row d and action d).

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


def as_sizes(action_sizes: int | Sequence[int]) -> tuple[int, ...]:
    """The choices of each action component; a whole number A means one categorical (D = 1)."""
    return (action_sizes,) if isinstance(action_sizes, int) else tuple(int(n) for n in action_sizes)


def check_encoder(encoder: str, obs_shape: Sequence[int], agents: bool = False) -> None:
    """Raise ValueError unless `encoder` can read observations of `obs_shape`."""
    if encoder not in ENCODERS:
        raise ValueError(f"agent.encoder must be one of {list(ENCODERS)}, got {encoder!r}")
    if encoder == "cnn" and agents:
        raise ValueError("agent.encoder=cnn reads one image; a multi-agent env's observations are rows per agent")
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


class AgentLayout:
    """How each member's networks read a multi-agent env's rows, one per agent: [K, N, D, F]
    inputs (an agent's observation, and for some critics its action vector).

    With separate parameters every agent has its own network (member k's networks are rows
    k·R·D … of the ensemble, agent-minor); with shared parameters one network reads every
    agent's row with the agent's one-hot id appended (`extra_features` = D).

    Args:
        agents: D.
        shared: one network for all agents (with an agent-id input) instead of one per agent.
    """

    def __init__(self, agents: int, shared: bool) -> None:
        self.agents, self.shared = agents, shared
        self.networks = 1 if shared else agents  # per member and ensemble replica
        self.extra_features = agents if shared else 0

    def inputs(self, rows: Tensor, repeats: int) -> Tensor:
        """[K, N, D, F] → the inputs of K·repeats·networks networks: separate [K·R·D, N, F],
        shared [K·R, N·D, F + D], each replica r of a member reading the same rows."""
        members, count, agents, features = rows.shape
        if self.shared:
            ids = torch.eye(agents, dtype=rows.dtype, device=rows.device).expand(members, count, agents, agents)
            rows = torch.cat([rows, ids], dim=-1).reshape(members, 1, count * agents, features + agents)
        else:
            rows = rows.transpose(1, 2).unsqueeze(1)  # [K, 1, D, N, F]
        every = rows.expand(members, repeats, *rows.shape[2:])
        return every.reshape(members * repeats * self.networks, -1, every.shape[-1])

    def outputs(self, values: Tensor, members: int, repeats: int) -> Tensor:
        """The networks' outputs [K·R·networks, N or N·D, out] → [K, R, N, D, out]."""
        out = values.shape[-1]
        if self.shared:
            return values.view(members, repeats, -1, self.agents, out)
        return values.view(members, repeats, self.agents, -1, out).transpose(2, 3)


def padding_mask(action_sizes: Sequence[int]) -> Tensor | None:
    """[D, A] bool, true at the choices a component lacks (a < sizes[d], A = max sizes); None if none."""
    sizes = torch.tensor(action_sizes)
    padding = torch.arange(int(sizes.max())) >= sizes.unsqueeze(-1)
    return padding if bool(padding.any()) else None


class Actor(nn.Module):
    """obs → logits [K, B, D, A] of K members' policies: D components of A choices each, padded
    choices (a component with fewer) at −inf.

    One agent: an encoder (flatten, or one convolution for images) reads the whole observation,
    then an MLP outputs D·A logits. Several agents (obs [K, B, D, O]): agent d's A logits come from
    its own row (decentralised execution), through its own MLP or a shared one (`AgentLayout`).

    Args:
        members: K.
        obs_shape: one observation's shape; [C, H, W] for `encoder="cnn"`; [D, O] for agents.
        action_sizes: the choices of each component (a whole number A: one categorical).
        hidden_sizes: widths of the MLP's hidden layers.
        encoder: "mlp" or "cnn".
        channels: output channels of the convolution (cnn only).
        agents: the D components are agents, each observing its own row of obs.
        share_parameters: with agents, one network for all (with an agent-id input).
    """

    def __init__(
        self,
        members: int,
        obs_shape: int | Sequence[int],
        action_sizes: int | Sequence[int],
        hidden_sizes: Sequence[int],
        encoder: str = "mlp",
        channels: int = 16,
        agents: bool = False,
        share_parameters: bool = False,
    ) -> None:
        super().__init__()
        obs_shape, sizes = as_shape(obs_shape), as_sizes(action_sizes)
        check_encoder(encoder, obs_shape, agents)
        self.members, self.action_sizes = members, sizes
        self.components, self.num_actions = len(sizes), max(sizes)
        self._padding = padding_mask(sizes)
        # [D, A] bool: the choices each component has (all but the padding)
        self.allowed = (
            torch.ones(len(sizes), self.num_actions, dtype=torch.bool) if self._padding is None else ~self._padding
        )
        if agents:
            self.layout = AgentLayout(len(sizes), share_parameters)
            features = obs_shape[-1] + self.layout.extra_features
            self.net = EnsembleMLP(members * self.layout.networks, features, hidden_sizes, self.num_actions)
        else:
            self.layout = None
            self.encoder = EnsembleEncoder(members, 1, obs_shape, encoder, channels)
            self.net = EnsembleMLP(members, self.encoder.features, hidden_sizes, self.components * self.num_actions)

    def forward(self, obs: Tensor) -> Tensor:
        if self.layout is None:
            logits = self.net(self.encoder(obs))
            logits = logits.view(*logits.shape[:-1], self.components, self.num_actions)
        else:
            logits = self.layout.outputs(self.net(self.layout.inputs(obs, 1)), self.members, 1)[:, 0]
        return logits if self._padding is None else logits.masked_fill(self._padding, float("-inf"))

    def init_member_(self, member: int, generator: torch.Generator | None, init_scale: float) -> None:
        """Draw member `member`'s parameters afresh; `init_scale` multiplies its output layer:
        below 1 the initial policy is closer to uniform, above 1 closer to deterministic."""
        networks = 1 if self.layout is None else self.layout.networks
        if self.layout is None:
            self.encoder.init_member_(member, generator)
        rows = slice(member * networks, (member + 1) * networks)
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

    A critic has H heads: one value of the joint action (centralised, H = 1), or one per agent
    reading only that agent's row and action (independent, H = D). Each head's value Q̂_h is the
    one that every selector, critic target and diagnostic uses, combined per action from the
    critics (`ensemble_value`; with twin critics and pessimism 1, `Q̂(s, a) = min_j Q_j(s, a)`)
    at one-hot actions. An action vector y off the vertices (a relaxed Gumbel-softmax sample) is
    valued by the critic's own extension of Q̂: linear for a q_head critic, `Q̂_d(s, y) = y_d ·
    Q̂_d(s, ·)`; the critics' joint input for a concat critic, the critics' `Q_j(s, y)` combined.
    Both agree with Q̂ at every one-hot action, so every selector estimates the gradient of one
    objective, `E_{a~π}[Σ_h Q̂_h(s, a)]`.
    `of_each` and `components_each` return every critic's values, for the critics' regression
    loss and the combinations above.
    """

    def __init__(self, critic: QHeadCritic | ConcatCritic, obs: Tensor) -> None:
        self.critic, self.obs = critic, obs

    def of_each(self, action: Tensor) -> Tensor:
        """Q_j,h(s, y) of every critic j and head h for action vectors y [K, B, D, A]: [K, E, B, H]."""
        return self.critic.values(self.obs, action)

    def components_each(self, action: Tensor) -> Tensor:
        """Every critic's `components`: [K, E, B, D, A]."""
        return self.critic.component_values(self.obs, action)

    def heads(self, action: Tensor) -> Tensor:
        """Q̂_h(s, y) of each head, the critics' values combined, for action vectors y [K, B, D, A]: [K, B, H]."""
        return ensemble_value(self.of_each(action), self.critic.pessimism)

    def of(self, action: Tensor) -> Tensor:
        """Σ_h Q̂_h(s, y), the actor's objective at action vectors y [K, B, D, A]: [K, B]."""
        return self.heads(action).sum(-1)

    def components(self, action: Tensor) -> Tensor:
        """[K, B, D, A]: Q̂ of the head that reads component d, with component d set to the one-hot
        of each choice a and the others at `action` [K, B, D, A] (for D = 1, Q̂(s, a) for every a)."""
        return ensemble_value(self.components_each(action), self.critic.pessimism)

    def expected(self, probs: Tensor, action: Tensor) -> Tensor:
        """E_π of each head's value: [K, B, H]. An independent head's is exact, Σ_a π_d(a) Q̂_d(s, a);
        a centralised head's joint expectation has A^D terms, so it is averaged over the D
        components, each expected exactly with the others at their sampled `action` (unbiased;
        exact for D = 1). probs [K, B, D, A] (detached), action [K, B, D, A] one-hot."""
        values = (probs * self.components(action)).sum(-1)  # [K, B, D]
        return values.mean(-1, keepdim=True) if self.critic.centralised else values

    def head_sum(self, per_component: Tensor) -> Tensor:
        """Per-component quantities [K, B, D] (e.g. entropies) summed over what each head reads: [K, B, H]."""
        return per_component.sum(-1, keepdim=True) if self.critic.centralised else per_component


class _QHeadValues(CriticValues):
    """One forward pass serves every action vector: Q_j,d(s, y) = y_d · Q_j,d(s, ·)."""

    def __init__(self, critic: QHeadCritic, obs: Tensor) -> None:
        super().__init__(critic, obs)
        self._all_each: Tensor | None = None

    def components_each(self, action: Tensor | None = None) -> Tensor:
        """Q_j,d(s, a) for every critic j, component d and choice a: [K, E, B, D, A] (computed
        once; the other components do not enter a q_head critic's head)."""
        if self._all_each is None:
            self._all_each = self.critic.all_values(self.obs)
        return self._all_each

    def of_each(self, action: Tensor) -> Tensor:
        return (self.components_each() * action.unsqueeze(1)).sum(-1)

    def heads(self, action: Tensor) -> Tensor:
        """Q̂_d(s, y) = y_d · Q̂_d(s, ·), linear in y: [K, B, D]. (Not min_j (y_d · Q_j,d(s, ·)), which
        is concave in y and would give pathwise selectors another objective than the others.)"""
        return (self.components(action) * action).sum(-1)


class _Critic(nn.Module):
    """What both critic forms share: K members' ensembles of E critics, each member's critics
    reading its own observations.

    Args: as `Actor`, plus `ensemble`, the number E of critics per member (2: twin critics),
    `pessimism`, how their values combine into Q̂ (`ensemble_value`), and `centralised`: one
    head that reads the whole observation and every component's action vector, or (agents only)
    one head per agent reading its own row and action vector.
    """

    def __init__(
        self,
        members: int,
        obs_shape: int | Sequence[int],
        action_sizes: int | Sequence[int],
        hidden_sizes: Sequence[int],
        *,
        ensemble: int,
        pessimism: float,
        encoder: str = "mlp",
        channels: int = 16,
        agents: bool = False,
        share_parameters: bool = False,
        centralised: bool = True,
    ) -> None:
        super().__init__()
        obs_shape, sizes = as_shape(obs_shape), as_sizes(action_sizes)
        if not centralised and not agents:
            raise ValueError("agent.critic.centralised=false needs a multi-agent env (a critic per agent)")
        self.members, self.ensemble, self.pessimism = members, ensemble, pessimism
        self.components, self.num_actions, self.centralised = len(sizes), max(sizes), centralised
        self.heads = 1 if centralised else len(sizes)
        self._check(centralised)
        if centralised:
            self.layout = None
            self.encoder = EnsembleEncoder(members, ensemble, obs_shape, encoder, channels)
            action_inputs, outputs = self._action_inputs_and_outputs(self.components * self.num_actions)
            self.net = EnsembleMLP(members * ensemble, self.encoder.features + action_inputs, hidden_sizes, outputs)
        else:
            check_encoder(encoder, obs_shape, agents)
            self.layout = AgentLayout(len(sizes), share_parameters)
            action_inputs, outputs = self._action_inputs_and_outputs(self.num_actions)
            features = obs_shape[-1] + self.layout.extra_features + action_inputs
            self.net = EnsembleMLP(members * ensemble * self.layout.networks, features, hidden_sizes, outputs)

    def _check(self, centralised: bool) -> None:
        """Raise ValueError for a form this critic cannot take."""

    @staticmethod
    def _action_inputs_and_outputs(action_features: int) -> tuple[int, int]:
        raise NotImplementedError

    def init_member_(self, member: int, generator: torch.Generator | None) -> None:
        """Draw member `member`'s critics afresh."""
        networks = self.ensemble
        if self.layout is None:
            self.encoder.init_member_(member, generator)
        else:
            networks *= self.layout.networks
        self.net.init_rows_(slice(member * networks, (member + 1) * networks), generator)

    def _by_member(self, values: Tensor) -> Tensor:
        """[K·E, B, …] → [K, E, B, …]."""
        return values.view(self.members, self.ensemble, *values.shape[1:])

    def _per_agent(self, rows: Tensor) -> Tensor:
        """Independent critics' outputs for rows [K, N, D, F]: [K, E, N, D, out]."""
        return self.layout.outputs(self.net(self.layout.inputs(rows, self.ensemble)), self.members, self.ensemble)


class QHeadCritic(_Critic):
    """Q-values of every choice of a component at once: obs [K, B, *obs_shape] → [K, E, B, D, A];
    Q_d(s, y) = y_d · Q_d(s, ·). Centralised it serves one categorical (D = 1): a joint action's
    A^D values would need as many outputs; independent, each agent's head has its own A."""

    def _check(self, centralised: bool) -> None:
        if centralised and self.components > 1:
            raise ValueError(
                f"agent.critic.kind=q_head outputs a value per action of one categorical; this env's action has "
                f"{self.components} components ({self.num_actions}^{self.components} joint actions): use "
                "agent.critic.kind=concat (or agent.critic.centralised=false, a q_head per agent)"
            )

    @staticmethod
    def _action_inputs_and_outputs(action_features: int) -> tuple[int, int]:
        return 0, action_features

    def all_values(self, obs: Tensor) -> Tensor:
        """Q_j,d(s, a) for every critic j, component d and choice a: [K, E, B, D, A]."""
        if self.layout is None:
            return self._by_member(self.net(self.encoder(obs))).unsqueeze(3)
        return self._per_agent(obs)

    def values(self, obs: Tensor, action: Tensor) -> Tensor:
        """Q_j,d(s, y) for action vectors y [K, B, D, A]: [K, E, B, D] (D heads)."""
        return (self.all_values(obs) * action.unsqueeze(1)).sum(-1)

    def component_values(self, obs: Tensor, action: Tensor) -> Tensor:
        """[K, E, B, D, A]: `all_values`; the other components do not enter a head."""
        return self.all_values(obs)

    def bind(self, obs: Tensor) -> CriticValues:
        """Q(s, ·) for this batch of states."""
        return _QHeadValues(self, obs)


class ConcatCritic(_Critic):
    """Q(s, y) of the encoded observation concatenated with the action vectors: centralised,
    ([K, B, *obs_shape], [K, B, D, A]) → [K, E, B, 1], all D components' vectors flattened;
    independent, agent d's head reads its row and its own vector → [K, E, B, D].

    Args: as `QHeadCritic`.
    """

    @staticmethod
    def _action_inputs_and_outputs(action_features: int) -> tuple[int, int]:
        return action_features, 1

    def _head(self, features: Tensor, action: Tensor) -> Tensor:
        """features [K·E, N, F], flat action vectors [K, N, D·A] → [K, E, N]."""
        members, rows = action.shape[:2]
        actions = action.unsqueeze(1).expand(members, self.ensemble, rows, action.shape[-1])
        inputs = torch.cat([features, actions.reshape(members * self.ensemble, rows, -1)], dim=-1)
        return self._by_member(self.net(inputs).squeeze(-1))

    def values(self, obs: Tensor, action: Tensor) -> Tensor:
        """Q_j,h(s, y) for action vectors y [K, B, D, A]: [K, E, B, H]."""
        if self.layout is None:
            return self._head(self.encoder(obs), action.flatten(-2)).unsqueeze(-1)
        return self._per_agent(torch.cat([obs, action], dim=-1)).squeeze(-1)

    def component_values(self, obs: Tensor, action: Tensor) -> Tensor:
        """[K, E, B, D, A]: each head's value with component d set to each one-hot choice, the
        others at `action` [K, B, D, A]; one batched pass over B·D·A (independent: B·A) inputs."""
        members, batch, components, actions = action.shape
        one_hots = torch.eye(actions, dtype=action.dtype, device=action.device)
        if self.layout is not None:  # agent d's head reads (o_d, e_a): [K, B·A, D, O + A]
            rows = torch.cat(
                [
                    obs.unsqueeze(2).expand(members, batch, actions, *obs.shape[2:]),
                    one_hots[:, None, :].expand(members, batch, actions, components, actions),
                ],
                dim=-1,
            ).flatten(1, 2)
            values = self._per_agent(rows).reshape(members, self.ensemble, batch, actions, components)
            return values.transpose(-1, -2)
        # candidate (b, d, a): action[b] with component d replaced by e_a, flattened to D·A
        replaced = torch.eye(components, dtype=torch.bool, device=action.device).view(components, 1, components, 1)
        candidates = torch.where(
            replaced, one_hots.view(1, actions, 1, actions), action.view(members, batch, 1, 1, components, actions)
        )
        candidates = candidates.reshape(members, batch * components * actions, components * actions)
        features = self.encoder(obs).repeat_interleave(components * actions, dim=1)  # encoded once per state
        return self._head(features, candidates).view(members, self.ensemble, batch, components, actions)

    def bind(self, obs: Tensor) -> CriticValues:
        """Q(s, ·) for this batch of states, evaluated per action vector."""
        return CriticValues(self, obs)


CRITICS = {"q_head": QHeadCritic, "concat": ConcatCritic}
