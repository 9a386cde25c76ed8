"""Off-policy actor-critic with twin critics and target networks, identical for every selector,
for one categorical action, a factored one, or the joint action of several agents (MADDPG's
centralised critic; Lowe et al. 2017)."""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from rlgumbel.agents.optimizers import MemberAdam, clip_grad_norms_, member_rows, member_view
from rlgumbel.buffer import Batch
from rlgumbel.generators import Generator
from rlgumbel.layout import ENTROPY
from rlgumbel.networks import CRITICS, Actor, ConcatCritic, CriticValues, QHeadCritic, as_shape, as_sizes
from rlgumbel.normalizer import ObservationNormalizer
from rlgumbel.schedules import LinearSchedule
from rlgumbel.selectors import ActionSelector, Temperature


def masked_logits(logits: Tensor, mask: Tensor | None) -> Tensor:
    """Logits with disallowed actions at −inf (never selected, probability 0): [K, B, D, A]."""
    return logits if mask is None else logits.masked_fill(~mask, float("-inf"))


def _per_member(value: float | Sequence[float], members: int) -> Tensor:
    """A hyperparameter as [K] float32 values: one number for every member, or one per member."""
    values = [float(value)] * members if isinstance(value, numbers.Real) else [float(v) for v in value]
    if len(values) != members:
        raise ValueError(f"{members} members need {members} values, got {len(values)}")
    return torch.tensor(values)


def _failure(part: str, loss: Tensor, grad_norm: Tensor, member: int) -> str:
    return f"{part} loss {loss[member].item():.4g}, gradient norm {grad_norm[member].item():.4g}"


class ActorCritic:
    """The off-policy actor-critic: one learning rule for every selector, for K agents at once.

    A single run is a population of one. The K members share the network shapes, the selector
    and the update rhythm; each has its own networks, optimizer states, entropy coefficient and
    the per-member hyperparameters below (a number for all or a sequence of K values). Every
    tensor carries the members along dim 0, and no member's numbers depend on another's.

    An action has D components (D = 1: one categorical; a factored action; or the joint action of
    D agents), each its own categorical, sampled independently: logits, action vectors and
    probabilities are [K, B, D, A]. Q̂_h(s, a) is head h's value, the critics' values combined by
    `mean_j Q_j − pessimism · mean_j |Q_j − mean|` (with twin critics and pessimism 1, their
    per-action minimum; see `CriticValues`); a centralised critic has one head, independent
    critics one per agent. Every reward is the team's.
    Critic target of each head, from an n-step window r_0 … r_{k−1} of the replay buffer (k ≤
    n_step): `Σ_i γ^i r_i + γ^k (1 − terminated) · V'_h(s_k)` with `V'_h = E_π[Q̂'_h(s, a)]` under
    the target critics (`critic_target="expected"`: exact per component, see
    `CriticValues.expected`) or `Q̂'_h(s, y)` at the selector's action vectors y (`"sampled"`), plus
    α times the entropy of the components head h reads when the entropy bonus α > 0 and
    `entropy_backup` is on. Actor loss: `−(surrogate + α·H(π))`, the surrogate being the
    selector's estimate of `E_{a~π}[Σ_h Q̂_h(s, a)]` and H the joint entropy (the sum over
    components).

    Every learning-rule value is a required keyword: the schema (`ActorCriticConfig` in
    rlgumbel/schema.py) holds the defaults and checks the values, the env presets
    (configs/env/) say what each env changes.

    Args:
        obs_shape: one observation's shape (a whole number for vectors), from the env; [D, O]
            for D agents.
        action_sizes: the choices of each action component, from the env (a whole number A: one
            categorical).
        selector: how logits become actions and gradients.
        seeds: one per member; member k's networks are drawn from a generator seeded with it.
        actor, critic: network settings (the keys of `ActorConfig`, `CriticConfig`); `lr` and
            the actor's `init_scale` per member.
        gamma: discount in [0, 1], per member.
        target_update_rate: Polyak averaging rate of the target critics in (0, 1], per member.
        entropy_coef: α ≥ 0, weight of the entropy bonus (its starting value if tuned), per member.
        target_entropy_fraction: None keeps α fixed; a number in [0, 1) (per member) tunes log α
            by Adam so that the policy's entropy tracks this fraction of its maximum
            Σ_d log(action_sizes[d]) (automatic entropy adjustment, Haarnoja et al. 2018;
            Christodoulou 2019).
        target_entropy_end_fraction: None keeps the target; a fraction (per member) makes it fall
            linearly to that fraction of the maximum entropy between the env steps
            `target_entropy_decay_steps` (`set_step` says where training is): a policy that
            explores widely first, then commits.
        target_entropy_decay_steps: [first, last] env step of that fall (or one pair per member).
        entropy_lr: Adam learning rate of log α when tuned (> 0), per member.
        entropy_backup: add α·H to the critic target (soft values, Haarnoja et al. 2018); off,
            α regularises the actor only and the critics learn the policy's plain return. Where
            every step costs reward and termination ends it, a large α·H makes long episodes
            worth more than reaching the goal; without the backup it cannot.
        actor_update_every: one actor (and α) step every this many critic steps (≥ 1; Fujimoto
            et al. 2018 delay the actor so that it follows a critic that has caught up). A batch
            whose step was skipped still counts, so the members stay in step.
        critic_target: "expected" or "sampled".
        n_step: length n ≥ 1 of the reward windows of the critic target (Sutton 1988; Hessel
            et al. 2018), uncorrected for the policy that collected them.
        normalize_observations: standardise the networks' inputs by running statistics.
        encoder: "mlp" (flattened observations) or "cnn" (image observations [C, H, W]).
        conv_channels: channels of the convolutional encoder.
        max_grad_norm: gradient clipping threshold for actor and critics (> 0), per member.
        agents: the action components are D agents, each observing its own row of the
            observation [D, O] (decentralised actors), from the env.
        share_parameters: with agents, one actor network (and one per critic) for all agents,
            with an agent-id input, instead of one per agent.
    """

    def __init__(
        self,
        obs_shape: int | Sequence[int],
        action_sizes: int | Sequence[int],
        selector: ActionSelector,
        *,
        seeds: Sequence[int],
        actor: Mapping[str, Any],
        critic: Mapping[str, Any],
        gamma: float | Sequence[float],
        target_update_rate: float | Sequence[float],
        entropy_coef: float | Sequence[float],
        target_entropy_fraction: float | Sequence[float] | None,
        target_entropy_end_fraction: float | Sequence[float] | None,
        target_entropy_decay_steps: Sequence[int] | Sequence[Sequence[int]],
        entropy_lr: float | Sequence[float],
        entropy_backup: bool,
        actor_update_every: int,
        critic_target: str,
        n_step: int,
        normalize_observations: bool,
        encoder: str,
        conv_channels: int,
        max_grad_norm: float | Sequence[float],
        share_parameters: bool,
        agents: bool = False,
    ) -> None:
        self.members = members = len(seeds)
        self.target_update_rate = _per_member(target_update_rate, members)
        self.max_grad_norm = _per_member(max_grad_norm, members)
        self.entropy_backup = entropy_backup
        self.actor_update_every = actor_update_every
        self.n_step = n_step
        self.critic_target = critic_target
        self.selector = selector
        self._updates = 0
        obs_shape, action_sizes = as_shape(obs_shape), as_sizes(action_sizes)

        networks = {
            "encoder": encoder,
            "channels": conv_channels,
            "agents": agents,
            "share_parameters": share_parameters,
        }
        self.actor = Actor(members, obs_shape, action_sizes, actor["hidden_sizes"], **networks)
        critic_kind = CRITICS[critic["kind"]]
        self.critic = critic_kind(
            members,
            obs_shape,
            action_sizes,
            critic["hidden_sizes"],
            ensemble=critic["ensemble"],
            pessimism=critic["pessimism"],
            centralised=critic["centralised"],
            **networks,
        )
        init_scales = _per_member(actor["init_scale"], members)
        for member, seed in enumerate(seeds):
            generator = torch.Generator().manual_seed(int(seed))
            self.actor.init_member_(member, generator, float(init_scales[member]))
            self.critic.init_member_(member, generator)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.normalizer = ObservationNormalizer(members, obs_shape) if normalize_observations else None
        self._actor_params = list(self.actor.parameters())
        self._critic_params = list(self.critic.parameters())
        self._target_views = [member_view(p, members) for p in self.target_critic.parameters()]
        self._critic_views = [member_view(p, members) for p in self._critic_params]
        self._target_rates = _broadcast_per_member(self.target_update_rate, self._target_views)
        self.actor_optimizer = MemberAdam(self._actor_params, _per_member(actor["lr"], members))
        self.critic_optimizer = MemberAdam(self._critic_params, _per_member(critic["lr"], members))
        gamma = _per_member(gamma, members).double()
        self._discounts = (gamma.unsqueeze(-1) ** torch.arange(n_step + 1, dtype=torch.float64)).float()  # [K, n+1]
        self._entropy_coef = _per_member(entropy_coef, members)  # α: a constant, or exp(log α) tuned
        self._init_entropy_tuning(
            action_sizes, target_entropy_fraction, target_entropy_end_fraction, target_entropy_decay_steps, entropy_lr
        )
        # the last actor step's loss, entropy and gradient norm, each [K]
        self._last_actor: tuple[Tensor, ...] = tuple(torch.full((members,), math.nan) for _ in range(3))

    def _init_entropy_tuning(
        self,
        action_sizes: Sequence[int],
        fraction: float | Sequence[float] | None,
        end_fraction: float | Sequence[float] | None,
        decay_steps: Sequence[int] | Sequence[Sequence[int]],
        lr: float | Sequence[float],
    ) -> None:
        self.target_entropy: Tensor | None = None
        self.log_entropy_coef: Tensor | None = None
        self._target_entropy_falls: list[tuple[LinearSchedule, int]] = []  # per member: the fall, its first step
        if fraction is None:
            return
        max_entropy = sum(math.log(size) for size in action_sizes)  # the uniform joint policy's
        self.target_entropy = _per_member(fraction, self.members) * max_entropy
        if end_fraction is not None:
            ends = _per_member(end_fraction, self.members) * max_entropy
            steps = [decay_steps] * self.members if isinstance(decay_steps[0], numbers.Integral) else decay_steps
            self._target_entropy_falls = [
                (LinearSchedule(float(start), float(end), last - first), first)
                for start, end, (first, last) in zip(self.target_entropy, ends, steps)
            ]
        # Its gradient is set in closed form (`_actor_step`), so autograd never tracks it.
        self.log_entropy_coef = self._entropy_coef.log()
        self.entropy_optimizer = MemberAdam([self.log_entropy_coef], _per_member(lr, self.members))

    def set_step(self, step: int) -> None:
        """Where training is, in env steps: sets the target entropy of a falling target."""
        if self._target_entropy_falls:
            self.target_entropy = torch.tensor([fall(step - first) for fall, first in self._target_entropy_falls])

    def observe(self, obs: Tensor) -> None:
        """Collected observations [K, N, *obs_shape]: update the input statistics (if normalising)."""
        if self.normalizer is not None:
            self.normalizer.update(obs)

    def network_inputs(self, obs: Tensor) -> Tensor:
        """What actor and critics see of observations [K, N, *obs_shape]: normalised or as they are."""
        return obs if self.normalizer is None else self.normalizer(obs)

    @torch.no_grad()
    def act(
        self, obs: Tensor, temperature: Temperature, generator: Generator, step: int, mask: Tensor | None = None
    ) -> Tensor:
        """Behaviour actions for rollouts: obs [K, N, *obs_shape], mask [K, N, D, A] bool of allowed
        actions → [K, N, D] int64."""
        return self.selector.act(self.logits(obs, mask), temperature, generator, step)

    @torch.no_grad()
    def logits(self, obs: Tensor, mask: Tensor | None = None) -> Tensor:
        """Actor logits without gradient, disallowed actions at −inf: obs [K, N, *obs_shape] → [K, N, D, A]."""
        return masked_logits(self.actor(self.network_inputs(obs)), mask)

    @torch.no_grad()
    def member_logits(self, member: int, obs: Tensor, mask: Tensor | None = None) -> Tensor:
        """Member `member`'s logits for its own observations [N, *obs_shape]: [N, D, A]."""
        every = obs.unsqueeze(0).expand(self.members, *obs.shape)
        return masked_logits(self.actor(self.network_inputs(every))[member], mask)

    def update(
        self, batch: Batch, temperature: Temperature, generator: Generator, learning: Tensor | None = None
    ) -> tuple[dict[str, Tensor], dict[int, str]]:
        """One critic step on each member's batch [K, B, …], and one actor (and α) step every
        `actor_update_every` calls.

        Args:
            learning: [K] bool, the members that learn (default all); the others' state stays.
        Returns:
            The metrics, [K] detached tensors: losses/critic, losses/actor, policy/entropy,
            policy/grad_norm (the last actor step's), values/q_mean, policy/entropy_coef; and
            for every member whose loss or gradient was not finite, a line naming the part and
            its values. That member's step was skipped: its parameters are those before it.
        """
        if batch.action.shape[::2] != (self.members, self.actor.components) or batch.action.dim() != 3:
            raise ValueError(
                f"a batch's actions are [K, B, D] = [{self.members}, B, {self.actor.components}], "
                f"got {list(batch.action.shape)}"
            )
        learning = torch.ones(self.members, dtype=torch.bool) if learning is None else learning
        obs = self.network_inputs(batch.obs)
        critic_loss, critic_norm, q_mean, applied = self._critic_step(obs, batch, temperature, generator, learning)
        failures = {k: _failure("critic", critic_loss, critic_norm, k) for k in _lost(learning, applied)}
        if self._updates % self.actor_update_every == 0:
            stepping = applied
            loss, entropy, grad_norm, applied = self._actor_step(obs, batch.mask, temperature, generator, stepping)
            failures |= {k: _failure("actor", loss, grad_norm, k) for k in _lost(stepping, applied)}
            self._last_actor = tuple(
                torch.where(applied, new, old) for new, old in zip((loss, entropy, grad_norm), self._last_actor)
            )
        self._updates += 1
        self._update_targets(applied)
        # Between actor steps, report the last one (kept in checkpoints, so a resume logs the same).
        actor_loss, entropy, grad_norm = self._last_actor
        metrics = {
            "losses/critic": critic_loss,
            "losses/actor": actor_loss,
            ENTROPY: entropy,
            "policy/grad_norm": grad_norm,
            "values/q_mean": q_mean,
            "policy/entropy_coef": self._entropy_coef.clone(),
        }
        return metrics, failures

    @torch.no_grad()
    def _update_targets(self, applied: Tensor) -> None:
        """Polyak averaging of the target critics, for the members whose update was applied."""
        rates = self._target_rates
        if not bool(applied.all()):
            rates = _broadcast_per_member(torch.where(applied, self.target_update_rate, 0.0), self._target_views)
        torch._foreach_lerp_(self._target_views, self._critic_views, rates)

    @torch.no_grad()
    def td_target(self, batch: Batch, temperature: Temperature, generator: Generator) -> Tensor:
        """The critics' regression target for each transition of `batch` and each head: [K, B, H].

        `Σ_i γ^i r_i + γ^k (1 − terminated) · V'_h(s_k)` over the batch's reward windows, V'_h as
        in the class docstring.
        """
        next_obs = self.network_inputs(batch.next_obs)
        next_logits = masked_logits(self.actor(next_obs), batch.next_mask)
        next_selection = self.selector.select(next_logits, temperature, generator)
        target = self.target_critic.bind(next_obs)
        if self.critic_target == "expected":
            next_value = target.expected(next_selection.probs, next_selection.action)
        else:
            next_value = target.heads(next_selection.action)
        if self.entropy_backup:
            next_value = next_value + self._entropy_coef.view(-1, 1, 1) * target.head_sum(next_selection.entropy)
        window = batch.reward.shape[-1]
        rewards = (batch.reward * self._discounts[:, None, :window]).sum(-1)
        bootstrap = self._discounts.gather(1, batch.steps) * (1.0 - batch.terminated)
        return rewards.unsqueeze(-1) + bootstrap.unsqueeze(-1) * next_value

    def _critic_step(
        self, obs: Tensor, batch: Batch, temperature: Temperature, generator: Generator, learning: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The critics' step for the members `learning`; returns the loss, the gradient norm and
        the mean Q of each member [K], and which members' step was applied (finite)."""
        td_target = self.td_target(batch, temperature, generator)
        taken = F.one_hot(batch.action, self.actor.num_actions).to(obs.dtype)  # [K, B, D, A]
        q_values = self.critic.values(obs, taken)  # [K, E, B, H]
        loss = (q_values - td_target.unsqueeze(1)).square().sum(-1).mean(-1).sum(-1)  # [K]
        grads = member_rows(torch.autograd.grad(loss.sum(), self._critic_params), self.members)
        grad_norm = clip_grad_norms_(grads, self.max_grad_norm)
        applied = learning & torch.isfinite(loss) & torch.isfinite(grad_norm)
        self.critic_optimizer.step(grads, applied)
        return loss.detach(), grad_norm, q_values.detach().mean((1, 2, 3)), applied

    def _actor_step(
        self, obs: Tensor, mask: Tensor | None, temperature: Temperature, generator: Generator, stepping: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The actor's (and α's) step for the members `stepping`; returns the loss, the entropy
        and the gradient norm of each member [K], and which members' step was applied (finite)."""
        selection = self.selector.select(masked_logits(self.actor(obs), mask), temperature, generator)
        critic = self.critic.bind(obs)
        objective = self.selector.actor_objective(selection, critic)
        entropy = selection.entropy.sum(-1)  # [K, B], of the joint policy
        loss = -(objective + self._entropy_coef.unsqueeze(-1) * entropy).mean(-1)  # [K]
        # Gradients for the actor only: the critics are not trained by the actor's loss.
        grads = member_rows(torch.autograd.grad(loss.sum(), self._actor_params), self.members)
        grad_norm = clip_grad_norms_(grads, self.max_grad_norm)
        applied = stepping & torch.isfinite(loss) & torch.isfinite(grad_norm)
        self.actor_optimizer.step(grads, applied)
        entropy = entropy.detach().mean(-1)
        if self.log_entropy_coef is not None:
            # d/d(log α) of log α·(H − H_target): α grows while the entropy is below the target.
            self.entropy_optimizer.step((entropy - self.target_entropy).unsqueeze(1), applied)
            self._entropy_coef = self.log_entropy_coef.exp()
        return loss.detach(), entropy, grad_norm, applied

    def _modules(self) -> dict[str, nn.Module]:
        """The modules a checkpoint holds, by name."""
        modules = {"actor": self.actor, "critic": self.critic, "target_critic": self.target_critic}
        return modules | ({"normalizer": self.normalizer} if self.normalizer is not None else {})

    def member_state(self, member: int) -> dict[str, Any]:
        """Member `member`'s networks and optimizers, as a population of one would store them
        (the checkpoint of a member's run)."""
        state = {
            name: _member_tensors(module.state_dict(), member, self.members) for name, module in self._modules().items()
        }
        state |= {
            "actor_optimizer": self.actor_optimizer.member_state(member),
            "critic_optimizer": self.critic_optimizer.member_state(member),
            "updates": self._updates,
            "last_actor": tuple(value[member : member + 1].clone() for value in self._last_actor),
        }
        if self.log_entropy_coef is not None:
            state["log_entropy_coef"] = self.log_entropy_coef[member : member + 1].clone()
            state["entropy_optimizer"] = self.entropy_optimizer.member_state(member)
        return state

    def load_member_state(self, member: int, state: Mapping[str, Any]) -> None:
        """Restore what `member_state` returned into member `member`."""
        with torch.no_grad():
            for name, module in self._modules().items():
                mine = module.state_dict()
                for key, saved in state[name].items():
                    view = member_view(mine[key], self.members)
                    view[member] = saved.view(view.shape[1:])
        self.actor_optimizer.load_member_state(member, state["actor_optimizer"])
        self.critic_optimizer.load_member_state(member, state["critic_optimizer"])
        self._updates = state["updates"]
        for mine, saved in zip(self._last_actor, state["last_actor"]):
            mine[member] = saved[0]
        if self.log_entropy_coef is not None:
            self.log_entropy_coef[member] = state["log_entropy_coef"][0]
            self.entropy_optimizer.load_member_state(member, state["entropy_optimizer"])
            self._entropy_coef = self.log_entropy_coef.exp()

    def state_dict(self) -> dict[str, Any]:
        """The state of a population of one (its checkpoint)."""
        if self.members != 1:
            raise ValueError(f"a population of {self.members} is saved member by member (member_state)")
        return self.member_state(0)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what `state_dict` returned."""
        self.load_member_state(0, state)


def _lost(tried: Tensor, applied: Tensor) -> list[int]:
    """Members whose step was tried but not applied."""
    return (tried & ~applied).nonzero().flatten().tolist() if not bool(applied.eq(tried).all()) else []


def _broadcast_per_member(values: Tensor, views: Sequence[Tensor]) -> list[Tensor]:
    """Per-member values [K] shaped to broadcast against each member view [K, r, …] of `views`."""
    return [values.view(-1, *[1] * (view.dim() - 1)) for view in views]


def _member_tensors(state: Mapping[str, Tensor], member: int, members: int) -> dict[str, Tensor]:
    """Member `member`'s rows of every tensor of a module's state dict."""
    return {key: member_view(value, members)[member].clone() for key, value in state.items()}


class MemberActor(nn.Module):
    """Member `member` of a population's actor as a network of its own: obs [B, *obs_shape] →
    logits [B, D, A]. Its parameters are the whole population's; the other members' get zero gradients."""

    def __init__(self, actor: Actor, member: int) -> None:
        super().__init__()
        self.actor, self.member = actor, member

    def forward(self, obs: Tensor) -> Tensor:
        members = self.actor.members
        return self.actor(obs.unsqueeze(0).expand(members, *obs.shape))[self.member]


class _MemberValues:
    """One member's Q(s, ·) for its own batch of states: the `ActionValue` a selector expects."""

    def __init__(self, values: CriticValues, member: int, members: int) -> None:
        self.values, self.member, self.members = values, member, members

    def _every(self, action: Tensor) -> Tensor:
        return action.unsqueeze(0).expand(self.members, *action.shape)

    def of(self, action: Tensor) -> Tensor:
        return self.values.of(self._every(action))[self.member]

    def components(self, action: Tensor) -> Tensor:
        return self.values.components(self._every(action))[self.member]


class MemberCritic:
    """Member `member` of a population's critics, bound to that member's states [B, *obs_shape]."""

    def __init__(self, critic: QHeadCritic | ConcatCritic, member: int) -> None:
        self.critic, self.member = critic, member

    def bind(self, obs: Tensor) -> _MemberValues:
        members = self.critic.members
        return _MemberValues(self.critic.bind(obs.unsqueeze(0).expand(members, *obs.shape)), self.member, members)
