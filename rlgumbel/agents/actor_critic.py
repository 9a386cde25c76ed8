"""Off-policy actor-critic with twin critics and target networks, identical for every selector."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor
from torch.nn import functional as F

from rlgumbel.buffer import Batch
from rlgumbel.networks import CRITICS, Actor
from rlgumbel.selectors import ActionSelector

CRITIC_TARGETS = ("expected", "sampled")


@dataclass(frozen=True)
class ActorSettings:
    """agent.actor: hidden layer widths and Adam learning rate."""

    hidden_sizes: Sequence[int] = (64, 64)
    lr: float = 3e-4


@dataclass(frozen=True)
class CriticSettings:
    """agent.critic: form (q_head | concat), hidden layer widths and Adam learning rate."""

    kind: str = "q_head"
    hidden_sizes: Sequence[int] = (64, 64)
    lr: float = 1e-3


def _settings(cls: type, key: str, values: Mapping[str, Any]) -> Any:
    allowed = set(cls.__dataclass_fields__)
    unknown = set(values) - allowed
    if unknown:
        raise ValueError(f"agent.{key} has unknown keys {sorted(unknown)}; allowed: {sorted(allowed)}")
    settings = cls(**values)
    if any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in settings.hidden_sizes):
        raise ValueError(f"agent.{key}.hidden_sizes must be positive whole numbers, got {list(settings.hidden_sizes)}")
    if not settings.lr > 0:
        raise ValueError(f"agent.{key}.lr must be > 0, got {settings.lr!r}")
    return settings


def _check_range(key: str, value: float, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ValueError(f"agent.{key} must be a number in [{low}, {high}], got {value!r}")
    return float(value)


class ActorCritic:
    """The learning rule of DESIGN.md: one update for every selector.

    Critic target: `r + γ(1 − terminated) · V'(s')` with `V'(s') = Σ_a π(a|s') min_j Q'_j(s', a)`
    (`critic_target="expected"`) or `min_j Q'_j(s', y')` at the selector's action vector y'
    (`"sampled"`); plus `α·H(π(·|s'))` when the entropy bonus α > 0.
    Actor loss: `−(surrogate + α·H(π))`, the surrogate being the selector's estimate of
    `E_π[min_j Q_j(s, a)]`.

    Args:
        obs_dim, num_actions: sizes from the env, passed at build time.
        selector: how logits become actions and gradients.
        actor, critic: network settings (`ActorSettings`, `CriticSettings` keys).
        gamma: discount in [0, 1].
        target_update_rate: Polyak averaging rate of the target critics in (0, 1].
        entropy_coef: α ≥ 0, weight of the entropy bonus.
        critic_target: "expected" or "sampled".
        max_grad_norm: gradient clipping threshold for actor and critics (> 0).
        device: where networks live.
    """

    def __init__(self, obs_dim: int, num_actions: int, selector: ActionSelector,
                 actor: Mapping[str, Any] = (), critic: Mapping[str, Any] = (),
                 gamma: float = 0.99, target_update_rate: float = 0.005, entropy_coef: float = 0.0,
                 critic_target: str = "expected", max_grad_norm: float = 10.0,
                 device: torch.device | str = "cpu") -> None:
        actor_settings = _settings(ActorSettings, "actor", dict(actor))
        critic_settings = _settings(CriticSettings, "critic", dict(critic))
        if critic_settings.kind not in CRITICS:
            raise ValueError(f"agent.critic.kind must be one of {sorted(CRITICS)}, got {critic_settings.kind!r}")
        if critic_target not in CRITIC_TARGETS:
            raise ValueError(f"agent.critic_target must be one of {list(CRITIC_TARGETS)}, got {critic_target!r}")
        self.gamma = _check_range("gamma", gamma, 0.0, 1.0)
        self.target_update_rate = _check_range("target_update_rate", target_update_rate, 1e-8, 1.0)
        self.entropy_coef = _check_range("entropy_coef", entropy_coef, 0.0, float("inf"))
        self.max_grad_norm = _check_range("max_grad_norm", max_grad_norm, 1e-8, float("inf"))
        self.critic_target = critic_target
        self.selector = selector

        critic_cls = CRITICS[critic_settings.kind]
        self.actor = Actor(obs_dim, num_actions, actor_settings.hidden_sizes).to(device)
        self.critic = critic_cls(obs_dim, num_actions, critic_settings.hidden_sizes).to(device)
        self.target_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=actor_settings.lr, fused=True)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=critic_settings.lr, fused=True)
        self._actor_params = list(self.actor.parameters())
        self._critic_params = list(self.critic.parameters())
        self._target_params = list(self.target_critic.parameters())

    @torch.no_grad()
    def act(self, obs: Tensor, temperature: float, generator: torch.Generator | None, step: int) -> Tensor:
        """Behaviour actions for rollouts: obs [N, D] → [N] int64."""
        return self.selector.act(self.actor(obs), temperature, generator, step)

    @torch.no_grad()
    def logits(self, obs: Tensor) -> Tensor:
        """Actor logits without gradient: obs [N, D] → [N, A]."""
        return self.actor(obs)

    def update(self, batch: Batch, temperature: float, generator: torch.Generator | None) -> dict[str, Tensor]:
        """One critic and one actor step on a batch.

        Returns:
            0-d detached tensors: losses/critic, losses/actor, policy/entropy, policy/grad_norm,
            values/q_mean.
        """
        critic_loss, q_mean = self._critic_step(batch, temperature, generator)
        actor_loss, entropy, grad_norm = self._actor_step(batch.obs, temperature, generator)
        torch._foreach_lerp_(self._target_params, self._critic_params, self.target_update_rate)
        return {"losses/critic": critic_loss, "losses/actor": actor_loss, "policy/entropy": entropy,
                "policy/grad_norm": grad_norm, "values/q_mean": q_mean}

    def _critic_step(self, batch: Batch, temperature: float,
                     generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        with torch.no_grad():
            next_selection = self.selector.select(self.actor(batch.next_obs), temperature, generator)
            target = self.target_critic.bind(batch.next_obs)
            if self.critic_target == "expected":
                next_value = (next_selection.probs * target.all()).sum(-1)
            else:
                next_value = target.of(next_selection.action)
            next_value = next_value + self.entropy_coef * next_selection.entropy
            td_target = batch.reward + self.gamma * (1.0 - batch.terminated) * next_value
        taken = F.one_hot(batch.action, self.actor.num_actions).to(batch.obs.dtype)
        q_values = self.critic.values(batch.obs, taken)  # [E, B]
        loss = (q_values - td_target).square().mean(-1).sum()
        self.critic_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self._critic_params, self.max_grad_norm)
        self.critic_optimizer.step()
        return loss.detach(), q_values.detach().mean()

    def _actor_step(self, obs: Tensor, temperature: float,
                    generator: torch.Generator | None) -> tuple[Tensor, Tensor, Tensor]:
        selection = self.selector.select(self.actor(obs), temperature, generator)
        critic = self.critic.bind(obs)
        objective = self.selector.actor_objective(selection, critic)
        loss = -(objective + self.entropy_coef * selection.entropy).mean()
        # Gradients for the actor only: the critics are not trained by the actor's loss.
        grads = torch.autograd.grad(loss, self._actor_params)
        for param, grad in zip(self._actor_params, grads):
            param.grad = grad
        grad_norm = torch.nn.utils.clip_grad_norm_(self._actor_params, self.max_grad_norm)
        self.actor_optimizer.step()
        return loss.detach(), selection.entropy.detach().mean(), grad_norm

    def state_dict(self) -> dict[str, Any]:
        """Networks and optimizers, for checkpoints."""
        return {"actor": self.actor.state_dict(), "critic": self.critic.state_dict(),
                "target_critic": self.target_critic.state_dict(),
                "actor_optimizer": self.actor_optimizer.state_dict(),
                "critic_optimizer": self.critic_optimizer.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what `state_dict` returned."""
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.target_critic.load_state_dict(state["target_critic"])
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
