"""Off-policy actor-critic with twin critics and target networks, identical for every selector."""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

from rlgumbel.buffer import Batch
from rlgumbel.layout import ENTROPY
from rlgumbel.networks import CRITICS, Actor, as_shape
from rlgumbel.normalizer import ObservationNormalizer
from rlgumbel.schedules import LinearSchedule
from rlgumbel.selectors import ActionSelector


class NonFiniteUpdate(ArithmeticError):
    """A loss or gradient of an update was NaN or infinite; that optimizer step was not taken."""


def masked_logits(logits: Tensor, mask: Tensor | None) -> Tensor:
    """Logits with disallowed actions at −inf (never selected, probability 0): [B, A]."""
    return logits if mask is None else logits.masked_fill(~mask, float("-inf"))


def _check_finite(part: str, loss: Tensor, grad_norm: Tensor) -> None:
    # One host sync per step: the price of never applying a NaN step to the parameters.
    if not bool(torch.isfinite(loss) & torch.isfinite(grad_norm)):
        raise NonFiniteUpdate(f"{part} loss {loss.item():.4g}, gradient norm {grad_norm.item():.4g}")


class ActorCritic:
    """The off-policy actor-critic: one learning rule for every selector.

    Q̂(s, a) = min_j Q_j(s, a), the twin critics' per-action minimum (see `CriticValues`).
    Critic target, from an n-step window r_0 … r_{k−1} of the replay buffer (k ≤ n_step):
    `Σ_i γ^i r_i + γ^k (1 − terminated) · V'(s_k)` with `V'(s) = Σ_a π(a|s) Q̂'(s, a)` under the
    target critics (`critic_target="expected"`) or `Q̂'(s, y)` at the selector's action vector y
    (`"sampled"`), plus `α·H(π(·|s))` when the entropy bonus α > 0 and `entropy_backup` is on.
    Actor loss: `−(surrogate + α·H(π))`, the surrogate being the selector's estimate of
    `E_{a~π}[Q̂(s, a)]`.

    Every learning-rule value is a required keyword: the schema (`ActorCriticConfig` in
    rlgumbel/schema.py) holds the defaults and checks the values, the env presets
    (rlgumbel/configs/env/) say what each env changes.

    Args:
        obs_shape: one observation's shape (a whole number for vectors), from the env.
        num_actions: from the env.
        selector: how logits become actions and gradients.
        actor, critic: network settings (the keys of `ActorConfig`, `CriticConfig`).
        gamma: discount in [0, 1].
        target_update_rate: Polyak averaging rate of the target critics in (0, 1].
        entropy_coef: α ≥ 0, weight of the entropy bonus (its starting value if tuned).
        target_entropy_fraction: None keeps α fixed; a number in [0, 1) tunes log α by Adam so
            that the policy's entropy tracks this fraction of its maximum log(num_actions)
            (automatic entropy adjustment, Haarnoja et al. 2018; Christodoulou 2019).
        target_entropy_end_fraction: None keeps the target; a fraction makes it fall linearly
            to that fraction of log(num_actions) between the env steps `target_entropy_decay_steps`
            (`set_step` says where training is): a policy that explores widely first, then commits.
        target_entropy_decay_steps: [first, last] env step of that fall.
        entropy_lr: Adam learning rate of log α when tuned (> 0).
        entropy_backup: add α·H to the critic target (soft values, Haarnoja et al. 2018); off,
            α regularises the actor only and the critics learn the policy's plain return. Where
            every step costs reward and termination ends it, a large α·H makes long episodes
            worth more than reaching the goal; without the backup it cannot.
        actor_update_every: one actor (and α) step every this many critic steps (≥ 1; Fujimoto
            et al. 2018 delay the actor so that it follows a critic that has caught up).
        critic_target: "expected" or "sampled".
        n_step: length n ≥ 1 of the reward windows of the critic target (Sutton 1988; Hessel
            et al. 2018), uncorrected for the policy that collected them.
        normalize_observations: standardise the networks' inputs by running statistics.
        encoder: "mlp" (flattened observations) or "cnn" (image observations [C, H, W]).
        conv_channels: channels of the convolutional encoder.
        max_grad_norm: gradient clipping threshold for actor and critics (> 0).
    """

    def __init__(
        self,
        obs_shape: int | Sequence[int],
        num_actions: int,
        selector: ActionSelector,
        *,
        actor: Mapping[str, Any],
        critic: Mapping[str, Any],
        gamma: float,
        target_update_rate: float,
        entropy_coef: float,
        target_entropy_fraction: float | None,
        target_entropy_end_fraction: float | None,
        target_entropy_decay_steps: Sequence[int],
        entropy_lr: float,
        entropy_backup: bool,
        actor_update_every: int,
        critic_target: str,
        n_step: int,
        normalize_observations: bool,
        encoder: str,
        conv_channels: int,
        max_grad_norm: float,
    ) -> None:
        self.gamma = float(gamma)
        self.target_update_rate = float(target_update_rate)
        self.entropy_coef = float(entropy_coef)
        self.max_grad_norm = float(max_grad_norm)
        self.entropy_lr = float(entropy_lr)
        self.entropy_backup = entropy_backup
        self.actor_update_every = actor_update_every
        self.n_step = n_step
        self.critic_target = critic_target
        self.selector = selector
        self._updates = 0
        obs_shape = as_shape(obs_shape)

        networks = {"encoder": encoder, "channels": conv_channels}
        self.actor = Actor(obs_shape, num_actions, actor["hidden_sizes"], **networks)
        self.actor.scale_initial_logits(actor["init_scale"])
        self.critic = CRITICS[critic["kind"]](
            obs_shape,
            num_actions,
            critic["hidden_sizes"],
            ensemble=critic["ensemble"],
            pessimism=critic["pessimism"],
            **networks,
        )
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.normalizer = ObservationNormalizer(obs_shape) if normalize_observations else None
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=actor["lr"], fused=True)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=critic["lr"], fused=True)
        self._actor_params = list(self.actor.parameters())
        self._critic_params = list(self.critic.parameters())
        self._target_params = list(self.target_critic.parameters())
        self._discounts = self.gamma ** torch.arange(self.n_step + 1, dtype=torch.float64).float()
        # α as a tensor: a constant, or exp(log α) trained towards the target entropy.
        self.target_entropy: float | None = None
        self.log_entropy_coef: Tensor | None = None
        self._entropy_coef = torch.tensor(self.entropy_coef)
        self._target_entropy_fall: tuple[LinearSchedule, int] | None = None  # the fall, its first step
        if target_entropy_fraction is not None:
            self.target_entropy = float(target_entropy_fraction) * math.log(num_actions)
            if target_entropy_end_fraction is not None:
                end = float(target_entropy_end_fraction) * math.log(num_actions)
                first, last = target_entropy_decay_steps
                self._target_entropy_fall = (LinearSchedule(self.target_entropy, end, last - first), first)
            # Its gradient is set in closed form (`_actor_step`), so autograd never tracks it.
            self.log_entropy_coef = torch.tensor(math.log(self.entropy_coef))
            self.entropy_optimizer = torch.optim.Adam([self.log_entropy_coef], lr=self.entropy_lr)
        nan = torch.tensor(math.nan)
        self._last_actor: tuple[Tensor, Tensor, Tensor] = (nan, nan, nan)  # loss, entropy, grad norm

    def set_step(self, step: int) -> None:
        """Where training is, in env steps: sets the target entropy of a falling target."""
        if self._target_entropy_fall is not None:
            fall, first = self._target_entropy_fall
            self.target_entropy = fall(step - first)

    def observe(self, obs: Tensor) -> None:
        """Collected observations [N, *obs_shape]: update the input statistics (if normalising)."""
        if self.normalizer is not None:
            self.normalizer.update(obs)

    def network_inputs(self, obs: Tensor) -> Tensor:
        """What actor and critics see of observations [N, *obs_shape]: normalised or as they are."""
        return obs if self.normalizer is None else self.normalizer(obs)

    @torch.no_grad()
    def act(
        self, obs: Tensor, temperature: float, generator: torch.Generator | None, step: int, mask: Tensor | None = None
    ) -> Tensor:
        """Behaviour actions for rollouts: obs [N, *obs_shape], mask [N, A] bool of allowed actions → [N] int64."""
        return self.selector.act(self.logits(obs, mask), temperature, generator, step)

    @torch.no_grad()
    def logits(self, obs: Tensor, mask: Tensor | None = None) -> Tensor:
        """Actor logits without gradient, disallowed actions at −inf: obs [N, *obs_shape] → [N, A]."""
        return masked_logits(self.actor(self.network_inputs(obs)), mask)

    def update(self, batch: Batch, temperature: float, generator: torch.Generator | None) -> dict[str, Tensor]:
        """One critic step on a batch, and one actor (and α) step every `actor_update_every` calls.

        Raises:
            NonFiniteUpdate: a loss or gradient was not finite; that step was skipped, so the
                parameters are those before it.
        Returns:
            0-d detached tensors: losses/critic, losses/actor, policy/entropy, policy/grad_norm
            (the last actor step's), values/q_mean, policy/entropy_coef.
        """
        obs = self.network_inputs(batch.obs)
        critic_loss, q_mean = self._critic_step(obs, batch, temperature, generator)
        if self._updates % self.actor_update_every == 0:
            self._last_actor = self._actor_step(obs, batch.mask, temperature, generator)
        self._updates += 1
        # Between actor steps, report the last one (kept in checkpoints, so a resume logs the same).
        actor_loss, entropy, grad_norm = self._last_actor
        torch._foreach_lerp_(self._target_params, self._critic_params, self.target_update_rate)
        return {
            "losses/critic": critic_loss,
            "losses/actor": actor_loss,
            ENTROPY: entropy,
            "policy/grad_norm": grad_norm,
            "values/q_mean": q_mean,
            "policy/entropy_coef": self._entropy_coef.clone(),
        }

    @torch.no_grad()
    def td_target(self, batch: Batch, temperature: float, generator: torch.Generator | None) -> Tensor:
        """The critics' regression target for each transition of `batch`: [B].

        `Σ_i γ^i r_i + γ^k (1 − terminated) · V'(s_k)` over the batch's reward windows, V' as in
        the class docstring.
        """
        next_obs = self.network_inputs(batch.next_obs)
        next_logits = masked_logits(self.actor(next_obs), batch.next_mask)
        next_selection = self.selector.select(next_logits, temperature, generator)
        target = self.target_critic.bind(next_obs)
        if self.critic_target == "expected":
            next_value = (next_selection.probs * target.all()).sum(-1)
        else:
            next_value = target.of(next_selection.action)
        if self.entropy_backup:
            next_value = next_value + self._entropy_coef * next_selection.entropy
        window = batch.reward.shape[-1]
        rewards = (batch.reward * self._discounts[:window]).sum(-1)
        return rewards + self._discounts[batch.steps] * (1.0 - batch.terminated) * next_value

    def _critic_step(
        self, obs: Tensor, batch: Batch, temperature: float, generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor]:
        td_target = self.td_target(batch, temperature, generator)
        taken = F.one_hot(batch.action, self.actor.num_actions).to(obs.dtype)
        q_values = self.critic.values(obs, taken)  # [E, B]
        loss = (q_values - td_target).square().mean(-1).sum()
        self.critic_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self._critic_params, self.max_grad_norm)
        _check_finite("critic", loss, grad_norm)
        self.critic_optimizer.step()
        return loss.detach(), q_values.detach().mean()

    def _actor_step(
        self, obs: Tensor, mask: Tensor | None, temperature: float, generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        selection = self.selector.select(masked_logits(self.actor(obs), mask), temperature, generator)
        critic = self.critic.bind(obs)
        objective = self.selector.actor_objective(selection, critic)
        loss = -(objective + self._entropy_coef * selection.entropy).mean()
        # Gradients for the actor only: the critics are not trained by the actor's loss.
        grads = torch.autograd.grad(loss, self._actor_params)
        for param, grad in zip(self._actor_params, grads):
            param.grad = grad
        grad_norm = torch.nn.utils.clip_grad_norm_(self._actor_params, self.max_grad_norm)
        _check_finite("actor", loss, grad_norm)
        self.actor_optimizer.step()
        entropy = selection.entropy.detach().mean()
        if self.log_entropy_coef is not None:
            # d/d(log α) of log α·(H − H_target): α grows while the entropy is below the target.
            self.log_entropy_coef.grad = entropy - self.target_entropy
            self.entropy_optimizer.step()
            self._entropy_coef = self.log_entropy_coef.detach().exp()
        return loss.detach(), entropy, grad_norm

    def state_dict(self) -> dict[str, Any]:
        """Networks and optimizers, for checkpoints."""
        return {
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "target_critic": self.target_critic.state_dict(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "critic_optimizer": self.critic_optimizer.state_dict(),
            "updates": self._updates,
            "last_actor": self._last_actor,
            **({"normalizer": self.normalizer.state_dict()} if self.normalizer is not None else {}),
            **(
                {
                    "log_entropy_coef": self.log_entropy_coef.detach().clone(),
                    "entropy_optimizer": self.entropy_optimizer.state_dict(),
                }
                if self.log_entropy_coef is not None
                else {}
            ),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what `state_dict` returned."""
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.target_critic.load_state_dict(state["target_critic"])
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        self._updates = state.get("updates", 0)
        self._last_actor = tuple(state.get("last_actor", self._last_actor))
        if self.normalizer is not None:
            self.normalizer.load_state_dict(state["normalizer"])
        if self.log_entropy_coef is not None and "log_entropy_coef" in state:
            with torch.no_grad():
                self.log_entropy_coef.copy_(state["log_entropy_coef"])
            self.entropy_optimizer.load_state_dict(state["entropy_optimizer"])
            self._entropy_coef = self.log_entropy_coef.detach().exp()
